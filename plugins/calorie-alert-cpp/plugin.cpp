// calorie-alert in C++: flags recipes whose calories exceed a threshold.
//
// Behaves exactly like the Rust `plugins/calorie-alert` (the reference) and
// is checked against the same vectors (`tests/vectors/calorie-alert.json`).
// JSON is parsed by hand the way serde_json parses it (strict UTF-8, depth
// limit 128, u64/i64/f64 numbers) and written the way serde_json writes a
// `Value` (compact, object keys in byte order via std::map, the last of
// repeated keys, ryu's float layout from std::to_chars' shortest digits).
// Built without exceptions: parse errors travel in `Parser::err`.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "transform_cpp.h"

namespace {

constexpr double kDefaultThreshold = 500.0;
double threshold = kDefaultThreshold;

enum class Kind { Null, Bool, Num, Str, Arr, Obj };

const char *kind_of(Kind k) {
    switch (k) {
    case Kind::Null: return "null";
    case Kind::Bool: return "a boolean";
    case Kind::Num: return "a number";
    case Kind::Str: return "a string";
    case Kind::Arr: return "an array";
    case Kind::Obj: return "an object";
    }
    return "?";
}

/// A parsed value: its kind, its number (as f64) and how serde_json writes it.
struct Val {
    Kind kind = Kind::Null;
    double num = 0;
    std::string canon;
};

/// Decodes one code point at s[i]; -1 when the bytes are not strict UTF-8.
int32_t utf8_next(std::string_view s, size_t &i) {
    uint8_t c = s[i];
    int32_t cp, min;
    size_t more;
    if (c < 0x80) { i++; return c; }
    if (c >= 0xc2 && c <= 0xdf) { cp = c & 0x1f; more = 1; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { cp = c & 0x0f; more = 2; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { cp = c & 0x07; more = 3; min = 0x10000; }
    else return -1;
    if (i + more >= s.size()) return -1;
    for (size_t j = 1; j <= more; j++) {
        uint8_t d = s[i + j];
        if ((d & 0xc0) != 0x80) return -1;
        cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
    i += more + 1;
    return cp;
}

void put_utf8(std::string &out, uint32_t cp) {
    if (cp < 0x80) out += char(cp);
    else if (cp < 0x800) { out += char(0xc0 | (cp >> 6)); out += char(0x80 | (cp & 63)); }
    else if (cp < 0x10000) { out += char(0xe0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 63)); out += char(0x80 | (cp & 63)); }
    else { out += char(0xf0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 63)); out += char(0x80 | ((cp >> 6) & 63)); out += char(0x80 | (cp & 63)); }
}

/// Writes a finite double the way serde_json (ryu) does.
void fmt_f64(std::string &out, double x) {
    if (x == 0) { out += std::signbit(x) ? "-0.0" : "0.0"; return; }
    if (x < 0) { out += '-'; x = -x; }
    char buf[64];
    // to_chars without a precision gives the shortest round-trip digits.
    auto r = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
    std::string_view sci(buf, r.ptr - buf);
    size_t e_at = sci.find('e');
    std::string digits;
    for (char ch : sci.substr(0, e_at)) if (ch != '.') digits += ch;
    int e = std::atoi(std::string(sci.substr(e_at + 1)).c_str());
    while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
    int n = int(digits.size()), k = e - (n - 1), kk = n + k;
    if (k >= 0 && kk <= 16) {
        out += digits; out.append(k, '0'); out += ".0";
    } else if (kk > 0 && kk <= 16) {
        out += digits.substr(0, kk); out += '.'; out += digits.substr(kk);
    } else if (kk > -5 && kk <= 0) {
        out += "0."; out.append(-kk, '0'); out += digits;
    } else {
        out += digits[0];
        if (n > 1) { out += '.'; out += digits.substr(1); }
        // serde_json writes a positive exponent with its sign: 1e+16.
        out += kk - 1 >= 0 ? "e+" : "e";
        out += std::to_string(kk - 1);
    }
}

void write_str(std::string &out, std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) { out += "\\u00"; out += hex[c >> 4]; out += hex[c & 15]; }
            else out += char(c);
        }
    }
    out += '"';
}

bool is_digit(int c) { return c >= '0' && c <= '9'; }

struct Parser {
    std::string_view s;
    size_t i = 0;
    int depth = 128;  // serde_json's recursion limit
    const char *err = nullptr;

    bool fail(const char *m) { if (!err) err = m; return false; }
    int peek() const { return i < s.size() ? (unsigned char)s[i] : -1; }
    void ws() { while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++; }
    bool enter() { return --depth == 0 ? fail("recursion limit exceeded") : true; }

    bool hex4(uint32_t &v) {
        if (i + 4 > s.size()) return fail("EOF while parsing a string");
        v = 0;
        for (int j = 0; j < 4; j++) {
            char c = s[i + j];
            int d;
            if (c >= '0' && c <= '9') d = c - '0';
            else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
            else return fail("invalid escape");
            v = v * 16 + d;
        }
        i += 4;
        return true;
    }

    /// Parses a string (at its opening quote) into its decoded bytes.
    bool string(std::string &out) {
        i++;
        for (;;) {
            if (i >= s.size()) return fail("EOF while parsing a string");
            unsigned char c = s[i++];
            if (c == '"') return true;
            if (c == '\\') {
                if (i >= s.size()) return fail("EOF while parsing a string");
                char e = s[i++];
                switch (e) {
                case '"': case '\\': case '/': out += e; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t u, lo;
                    if (!hex4(u)) return false;
                    if (u >= 0xdc00 && u <= 0xdfff) return fail("lone leading surrogate in hex escape");
                    if (u >= 0xd800 && u <= 0xdbff) {
                        if (i + 2 > s.size() || s[i] != '\\' || s[i + 1] != 'u') return fail("unexpected end of hex escape");
                        i += 2;
                        if (!hex4(lo)) return false;
                        if (lo < 0xdc00 || lo > 0xdfff) return fail("lone leading surrogate in hex escape");
                        u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                    }
                    put_utf8(out, u);
                    break;
                }
                default: return fail("invalid escape");
                }
            } else if (c < 0x20) {
                return fail("control character (\\u0000-\\u001F) found while parsing a string");
            } else {
                out += char(c);  // the input was checked to be UTF-8 as a whole
            }
        }
    }

    bool digits(size_t &j) {
        size_t d = j;
        while (j < s.size() && is_digit(s[j])) j++;
        return j == d ? fail("invalid number") : true;
    }

    bool number(Val &v) {
        size_t start = i, j = i;
        bool integer = true;
        if (s[j] == '-') j++;
        if (j < s.size() && s[j] == '0') j++;
        else if (!digits(j)) return false;
        if (j < s.size() && s[j] == '.') { integer = false; j++; if (!digits(j)) return false; }
        if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
            integer = false;
            j++;
            if (j < s.size() && (s[j] == '+' || s[j] == '-')) j++;
            if (!digits(j)) return false;
        }
        // serde_json rejects a digit straight after a leading zero.
        if (j < s.size() && is_digit(s[j])) return fail("invalid number");
        i = j;
        std::string text(s.substr(start, j - start));
        v.kind = Kind::Num;
        if (integer) {
            bool neg = text[0] == '-';
            uint64_t sig = 0;
            auto r = std::from_chars(text.data() + neg, text.data() + text.size(), sig);
            if (r.ec == std::errc()) {
                if (!neg) { v.canon = text; v.num = double(sig); return true; }
                if (sig >= 1 && sig <= (uint64_t(1) << 63)) {
                    v.canon = text;
                    v.num = sig == (uint64_t(1) << 63) ? double(INT64_MIN) : double(-int64_t(sig));
                    return true;
                }
            }
        }
        double f = std::strtod(text.c_str(), nullptr);
        if (std::isinf(f)) return fail("number out of range");
        v.num = f;
        fmt_f64(v.canon, f);
        return true;
    }

    /// Parses an object (at its `{`); std::map keeps keys in byte order and
    /// insert_or_assign keeps the last of a repeated key, like serde_json.
    bool object(std::map<std::string, Val> &members) {
        if (!enter()) return false;
        i++;
        ws();
        if (peek() == '}') { i++; depth++; return true; }
        for (;;) {
            ws();
            if (peek() != '"') return fail("key must be a string");
            std::string key;
            if (!string(key)) return false;
            ws();
            if (peek() != ':') return fail("expected `:`");
            i++;
            Val v;
            if (!value(v)) return false;
            members.insert_or_assign(std::move(key), std::move(v));
            ws();
            int c = peek();
            i++;
            if (c == '}') { depth++; return true; }
            if (c != ',') return fail("expected `,` or `}`");
        }
    }

    bool word(std::string_view w) {
        if (s.substr(i, w.size()) != w) return false;
        i += w.size();
        return true;
    }

    /// Parses one value, with its canonical text.
    bool value(Val &v) {
        ws();
        int c = peek();
        if (c == -1) return fail("EOF while parsing a value");
        if (c == '{') {
            std::map<std::string, Val> members;
            v.kind = Kind::Obj;
            if (!object(members)) return false;
            v.canon += '{';
            bool first = true;
            for (auto &[k, m] : members) {
                if (!first) v.canon += ',';
                first = false;
                write_str(v.canon, k);
                v.canon += ':';
                v.canon += m.canon;
            }
            v.canon += '}';
            return true;
        }
        if (c == '[') {
            v.kind = Kind::Arr;
            if (!enter()) return false;
            i++;
            v.canon += '[';
            ws();
            if (peek() == ']') { i++; depth++; v.canon += ']'; return true; }
            for (bool first = true;; first = false) {
                Val e;
                if (!value(e)) return false;
                if (!first) v.canon += ',';
                v.canon += e.canon;
                ws();
                int d = peek();
                i++;
                if (d == ']') { depth++; v.canon += ']'; return true; }
                if (d != ',') return fail("expected `,` or `]`");
            }
        }
        if (c == '"') {
            std::string str;
            v.kind = Kind::Str;
            if (!string(str)) return false;
            write_str(v.canon, str);
            return true;
        }
        if (c == '-' || is_digit(c)) return number(v);
        if (word("true")) { v.kind = Kind::Bool; v.canon = "true"; return true; }
        if (word("false")) { v.kind = Kind::Bool; v.canon = "false"; return true; }
        if (word("null")) { v.kind = Kind::Null; v.canon = "null"; return true; }
        return fail("expected value");
    }
};

enum class Outcome { Alert, Quiet, Invalid };

/// Checks one recipe: the alert in `out`, or the error in `msg`.
Outcome check_recipe(std::string_view value, double t, std::string &out, std::string &msg) {
    Parser p{value};
    std::map<std::string, Val> members;
    Kind kind = Kind::Null;
    for (size_t i = 0; i < value.size();)
        if (utf8_next(value, i) < 0) { p.err = "invalid unicode code point"; break; }
    if (!p.err) {
        p.ws();
        if (p.peek() == '{') {
            kind = Kind::Obj;
            p.object(members);
        } else {
            Val v;
            p.value(v);
            kind = v.kind;
        }
        if (!p.err) {
            p.ws();
            if (p.i != value.size()) p.err = "trailing characters";
        }
    }
    if (p.err) { msg = std::string("value is not valid JSON: ") + p.err; return Outcome::Invalid; }
    if (kind != Kind::Obj) { msg = std::string("recipe JSON must be an object, got ") + kind_of(kind); return Outcome::Invalid; }
    auto cal = members.find("calories");
    if (cal == members.end() || cal->second.kind == Kind::Null) { msg = "recipe has no calories"; return Outcome::Invalid; }
    if (cal->second.kind != Kind::Num) { msg = std::string("`calories` must be a number, got ") + kind_of(cal->second.kind); return Outcome::Invalid; }
    if (cal->second.num <= t) return Outcome::Quiet;
    auto field = [&](const char *k) {
        auto it = members.find(k);
        return it == members.end() ? std::string("null") : it->second.canon;
    };
    out = "{\"name\":" + field("name") + ",\"calories\":" + cal->second.canon + ",\"threshold\":";
    if (t == std::trunc(t) && std::fabs(t) < 9.0e15) out += std::to_string((long long)t);
    else fmt_f64(out, t);
    out += ",\"url\":" + field("url") + "}";
    return Outcome::Alert;
}

/// Rust's `char::is_whitespace`, which `str::trim` uses.
bool rust_ws(int32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

/// Rust's `{:?}` of a string, for ASCII and common text.
std::string rust_debug(std::string_view s) {
    std::string out = "\"";
    for (size_t i = 0; i < s.size();) {
        size_t at = i;
        int32_t c = utf8_next(s, i);
        if (c < 0) { i = at + 1; continue; }
        if (c == '"' || c == '\\') { out += '\\'; out += char(c); }
        else if (c == '\t') out += "\\t";
        else if (c == '\r') out += "\\r";
        else if (c == '\n') out += "\\n";
        else if (c == 0) out += "\\0";
        else if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
            char b[16];
            std::snprintf(b, sizeof b, "\\u{%x}", unsigned(c));
            out += b;
        } else out += s.substr(at, i - at);
    }
    return out + "\"";
}

/// Rust's `str::parse::<f64>` of trimmed text, accepting finite >= 0 only.
std::optional<double> parse_threshold(std::string_view s) {
    size_t a = 0, b = s.size();
    while (a < b) {
        size_t i = a;
        int32_t c = utf8_next(s.substr(0, b), i);
        if (c < 0 || !rust_ws(c)) break;
        a = i;
    }
    while (b > a) {
        size_t st = b - 1;
        while (st > a && (s[st] & 0xc0) == 0x80) st--;
        size_t i = st;
        int32_t c = utf8_next(s.substr(0, b), i);
        if (c < 0 || !rust_ws(c)) break;
        b = st;
    }
    std::string t(s.substr(a, b - a));
    size_t i = 0, nd = 0;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) i++;
    while (i < t.size() && is_digit(t[i])) { i++; nd++; }
    if (i < t.size() && t[i] == '.') { i++; while (i < t.size() && is_digit(t[i])) { i++; nd++; } }
    if (!nd) return std::nullopt;
    if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < t.size() && (t[i] == '+' || t[i] == '-')) i++;
        size_t d = i;
        while (i < t.size() && is_digit(t[i])) i++;
        if (i == d) return std::nullopt;
    }
    if (i != t.size()) return std::nullopt;
    double v = std::strtod(t.c_str(), nullptr);
    if (!std::isfinite(v) || !(v >= 0.0)) return std::nullopt;
    return v;
}

}  // namespace

std::expected<void, wit::string> exports::transform::Init(wit::vector<std::tuple<wit::string, wit::string>> params) {
    double t = kDefaultThreshold;
    for (auto &kv : params.get_view()) {
        std::string_view key = std::get<0>(kv).get_view(), val = std::get<1>(kv).get_view();
        if (key == "threshold") {
            auto v = parse_threshold(val);
            if (!v) {
                std::string m = "calorie-alert: parameter `threshold` must be a non-negative number, got " + rust_debug(val);
                return std::unexpected(wit::string::from_view(m));
            }
            t = *v;
        } else {
            std::string m = "calorie-alert: unknown parameter `" + std::string(key) + "` (known parameters: threshold)";
            return std::unexpected(wit::string::from_view(m));
        }
    }
    threshold = t;
    return {};
}

std::expected<wit::vector<::sluice::plugin::types::Output>, ::sluice::plugin::types::ProcessError>
exports::transform::Process(::sluice::plugin::types::Input rec) {
    using namespace ::sluice::plugin::types;
    auto bytes = rec.value.get_view();
    std::string out, msg;
    switch (check_recipe(std::string_view((const char *)bytes.data(), bytes.size()), threshold, out, msg)) {
    case Outcome::Quiet:
        return wit::vector<Output>::allocate(0);
    case Outcome::Invalid:
        return std::unexpected(ProcessError{ErrorKind::kInvalid, wit::string::from_view(msg)});
    case Outcome::Alert:
        break;
    }
    auto outputs = wit::vector<Output>::allocate(1);
    outputs.initialize(0, Output{
        std::nullopt,
        std::move(rec.key),
        wit::vector<uint8_t>::from_view(std::span<const uint8_t>((const uint8_t *)out.data(), out.size())),
        wit::vector<Header>::allocate(0),
    });
    return outputs;
}
