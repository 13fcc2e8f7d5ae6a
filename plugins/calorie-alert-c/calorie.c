// calorie-alert in C: the logic, independent of the component bindings.
//
// Behaves exactly like the Rust `plugins/calorie-alert` (the reference) and
// is checked against the same vectors (`tests/vectors/calorie-alert.json`).
// JSON is parsed by hand the way serde_json parses it (strict UTF-8, depth
// limit 128, u64/i64/f64 numbers) and written the way serde_json writes a
// `Value` (compact, object keys in byte order, the last of repeated keys,
// ryu's float layout).
#include "calorie.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- growable byte buffer ---------------------------------------------------

static void put(buf_t *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}
static void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }
static void putc_(buf_t *b, char c) { put(b, &c, 1); }
void buf_free(buf_t *b) { free(b->p); b->p = NULL; b->len = b->cap = 0; }

// ---- UTF-8 --------------------------------------------------------------------

// Decodes one code point at s[*i]; -1 when the bytes are not strict UTF-8.
static int32_t utf8_next(const uint8_t *s, size_t n, size_t *i) {
    uint8_t c = s[*i];
    int32_t cp, min;
    int more;
    if (c < 0x80) { (*i)++; return c; }
    if (c >= 0xc2 && c <= 0xdf) { cp = c & 0x1f; more = 1; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { cp = c & 0x0f; more = 2; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { cp = c & 0x07; more = 3; min = 0x10000; }
    else return -1;
    if (*i + more >= n) return -1;
    for (int j = 1; j <= more; j++) {
        uint8_t d = s[*i + j];
        if ((d & 0xc0) != 0x80) return -1;
        cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
    *i += more + 1;
    return cp;
}

static void put_utf8(buf_t *b, uint32_t cp) {
    char t[4];
    if (cp < 0x80) { t[0] = cp; put(b, t, 1); }
    else if (cp < 0x800) { t[0] = 0xc0 | (cp >> 6); t[1] = 0x80 | (cp & 63); put(b, t, 2); }
    else if (cp < 0x10000) { t[0] = 0xe0 | (cp >> 12); t[1] = 0x80 | ((cp >> 6) & 63); t[2] = 0x80 | (cp & 63); put(b, t, 3); }
    else { t[0] = 0xf0 | (cp >> 18); t[1] = 0x80 | ((cp >> 12) & 63); t[2] = 0x80 | ((cp >> 6) & 63); t[3] = 0x80 | (cp & 63); put(b, t, 4); }
}

// ---- numbers as serde_json writes them ----------------------------------------

// ryu's layout of digits × 10^k.
static void layout(buf_t *out, const char *digits, int n, int k) {
    int kk = n + k;
    char e[16];
    if (k >= 0 && kk <= 16) {
        put(out, digits, n);
        for (int i = 0; i < k; i++) putc_(out, '0');
        puts_(out, ".0");
    } else if (kk > 0 && kk <= 16) {
        put(out, digits, kk);
        putc_(out, '.');
        put(out, digits + kk, n - kk);
    } else if (kk > -5 && kk <= 0) {
        puts_(out, "0.");
        for (int i = 0; i < -kk; i++) putc_(out, '0');
        put(out, digits, n);
    } else {
        putc_(out, digits[0]);
        if (n > 1) { putc_(out, '.'); put(out, digits + 1, n - 1); }
        // serde_json writes a positive exponent with its sign: 1e+16.
        snprintf(e, sizeof e, "e%+d", kk - 1);
        puts_(out, e);
    }
}

// Writes a finite double the way serde_json (ryu) does: the shortest digits
// that read back as the same double.
static void fmt_f64(buf_t *out, double x) {
    if (x == 0) { puts_(out, signbit(x) ? "-0.0" : "0.0"); return; }
    if (x < 0) { putc_(out, '-'); x = -x; }
    char tmp[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
        if (strtod(tmp, NULL) == x) break;
    }
    char digits[24];
    int n = 0;
    const char *q = tmp;
    for (; *q != 'e'; q++)
        if (*q != '.') digits[n++] = *q;
    int e = atoi(q + 1);
    while (n > 1 && digits[n - 1] == '0') n--;
    layout(out, digits, n, e - (n - 1));
}

// ---- serde_json-compatible parsing ---------------------------------------------

enum kind { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct {
    const uint8_t *s;
    size_t n, i;
    int depth;
    const char *err;
} parser_t;

typedef struct member {
    buf_t key;   // the key's bytes (decoded)
    buf_t canon; // the value, as serde_json writes it
    int kind;
    double num;
    size_t index;
} member_t;

typedef struct { member_t *m; size_t len, cap; } members_t;

static void members_free(members_t *ms) {
    for (size_t j = 0; j < ms->len; j++) { buf_free(&ms->m[j].key); buf_free(&ms->m[j].canon); }
    free(ms->m);
    ms->m = NULL; ms->len = ms->cap = 0;
}

static int fail(parser_t *p, const char *msg) { if (!p->err) p->err = msg; return -1; }

static void ws(parser_t *p) {
    while (p->i < p->n) {
        uint8_t c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->i++;
    }
}

static int peek(parser_t *p) { return p->i < p->n ? p->s[p->i] : -1; }

static int value(parser_t *p, buf_t *out, int *kind, double *num);
static int object(parser_t *p, members_t *ms);

static int hex4(parser_t *p, uint32_t *v) {
    if (p->i + 4 > p->n) return fail(p, "EOF while parsing a string");
    *v = 0;
    for (int j = 0; j < 4; j++) {
        uint8_t c = p->s[p->i + j];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return fail(p, "invalid escape");
        *v = *v * 16 + d;
    }
    p->i += 4;
    return 0;
}

// Parses a string (at its opening quote) into its decoded bytes.
static int string(parser_t *p, buf_t *out) {
    p->i++;
    for (;;) {
        if (p->i >= p->n) return fail(p, "EOF while parsing a string");
        uint8_t c = p->s[p->i++];
        if (c == '"') return 0;
        if (c == '\\') {
            if (p->i >= p->n) return fail(p, "EOF while parsing a string");
            uint8_t e = p->s[p->i++];
            switch (e) {
            case '"': case '\\': case '/': putc_(out, e); break;
            case 'b': putc_(out, '\b'); break;
            case 'f': putc_(out, '\f'); break;
            case 'n': putc_(out, '\n'); break;
            case 'r': putc_(out, '\r'); break;
            case 't': putc_(out, '\t'); break;
            case 'u': {
                uint32_t u, lo;
                if (hex4(p, &u)) return -1;
                if (u >= 0xdc00 && u <= 0xdfff) return fail(p, "lone leading surrogate in hex escape");
                if (u >= 0xd800 && u <= 0xdbff) {
                    if (p->i + 2 > p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                        return fail(p, "unexpected end of hex escape");
                    p->i += 2;
                    if (hex4(p, &lo)) return -1;
                    if (lo < 0xdc00 || lo > 0xdfff) return fail(p, "lone leading surrogate in hex escape");
                    u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                }
                put_utf8(out, u);
                break;
            }
            default: return fail(p, "invalid escape");
            }
        } else if (c < 0x20) {
            return fail(p, "control character (\\u0000-\\u001F) found while parsing a string");
        } else {
            putc_(out, c); // the input was checked to be UTF-8 as a whole
        }
    }
}

static void write_str(buf_t *out, const uint8_t *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    putc_(out, '"');
    for (size_t j = 0; j < n; j++) {
        uint8_t c = s[j];
        switch (c) {
        case '"': puts_(out, "\\\""); break;
        case '\\': puts_(out, "\\\\"); break;
        case '\b': puts_(out, "\\b"); break;
        case '\f': puts_(out, "\\f"); break;
        case '\n': puts_(out, "\\n"); break;
        case '\r': puts_(out, "\\r"); break;
        case '\t': puts_(out, "\\t"); break;
        default:
            if (c < 0x20) {
                char u[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
                puts_(out, u);
            } else {
                putc_(out, c);
            }
        }
    }
    putc_(out, '"');
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int number(parser_t *p, buf_t *out, double *num) {
    size_t start = p->i, i = p->i;
    const uint8_t *s = p->s;
    int integer = 1;
    if (s[i] == '-') i++;
    if (i < p->n && s[i] == '0') i++;
    else if (i < p->n && is_digit(s[i])) while (i < p->n && is_digit(s[i])) i++;
    else return fail(p, "invalid number");
    if (i < p->n && s[i] == '.') {
        integer = 0;
        size_t d = ++i;
        while (i < p->n && is_digit(s[i])) i++;
        if (i == d) return fail(p, "invalid number");
    }
    if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
        integer = 0;
        i++;
        if (i < p->n && (s[i] == '+' || s[i] == '-')) i++;
        size_t d = i;
        while (i < p->n && is_digit(s[i])) i++;
        if (i == d) return fail(p, "invalid number");
    }
    // serde_json rejects a digit straight after a leading zero.
    if (i < p->n && is_digit(s[i])) return fail(p, "invalid number");
    p->i = i;
    size_t len = i - start;
    char *text = malloc(len + 1);
    if (!text) abort();
    memcpy(text, s + start, len);
    text[len] = 0;
    if (integer) {
        int neg = text[0] == '-';
        uint64_t sig = 0;
        int overflow = 0;
        for (const char *q = text + neg; *q; q++) {
            uint64_t d = *q - '0';
            if (sig > (UINT64_MAX - d) / 10) { overflow = 1; break; }
            sig = sig * 10 + d;
        }
        if (!overflow && !neg) {
            put(out, text, len);
            *num = (double)sig;
            free(text);
            return 0;
        }
        if (!overflow && neg && sig >= 1 && sig <= (UINT64_C(1) << 63)) {
            put(out, text, len);
            *num = sig == (UINT64_C(1) << 63) ? (double)INT64_MIN : (double)(-(int64_t)sig);
            free(text);
            return 0;
        }
    }
    double f = strtod(text, NULL);
    free(text);
    if (isinf(f)) return fail(p, "number out of range");
    fmt_f64(out, f);
    *num = f;
    return 0;
}

static int cmp_members(const void *a, const void *b) {
    const member_t *x = a, *y = b;
    size_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
    int c = n ? memcmp(x->key.p, y->key.p, n) : 0;
    if (c) return c;
    if (x->key.len != y->key.len) return x->key.len < y->key.len ? -1 : 1;
    return x->index < y->index ? -1 : 1;
}

static int same_key(const member_t *x, const member_t *y) {
    return x->key.len == y->key.len && (x->key.len == 0 || !memcmp(x->key.p, y->key.p, x->key.len));
}

// Sorts members by key and keeps the last of each repeated key, as
// serde_json's BTreeMap does.
static void normalise(members_t *ms) {
    if (ms->len > 1) qsort(ms->m, ms->len, sizeof *ms->m, cmp_members);
    size_t w = 0;
    for (size_t r = 0; r < ms->len; r++) {
        if (r + 1 < ms->len && same_key(&ms->m[r], &ms->m[r + 1])) {
            buf_free(&ms->m[r].key);
            buf_free(&ms->m[r].canon);
            continue;
        }
        ms->m[w++] = ms->m[r];
    }
    ms->len = w;
}

static int enter(parser_t *p) {
    if (--p->depth == 0) return fail(p, "recursion limit exceeded");
    return 0;
}

// Parses an object (at its `{`) into members, sorted and deduplicated.
static int object(parser_t *p, members_t *ms) {
    if (enter(p)) return -1;
    p->i++;
    ws(p);
    if (peek(p) == '}') { p->i++; p->depth++; return 0; }
    for (;;) {
        ws(p);
        if (peek(p) != '"') return fail(p, "key must be a string");
        if (ms->len == ms->cap) {
            ms->cap = ms->cap ? ms->cap * 2 : 8;
            ms->m = realloc(ms->m, ms->cap * sizeof *ms->m);
            if (!ms->m) abort();
        }
        member_t *m = &ms->m[ms->len++];
        memset(m, 0, sizeof *m);
        m->index = ms->len;
        if (string(p, &m->key)) return -1;
        ws(p);
        if (peek(p) != ':') return fail(p, "expected `:`");
        p->i++;
        if (value(p, &m->canon, &m->kind, &m->num)) return -1;
        ws(p);
        int c = peek(p);
        p->i++;
        if (c == '}') { p->depth++; normalise(ms); return 0; }
        if (c != ',') return fail(p, "expected `,` or `}`");
    }
}

static int word(parser_t *p, const char *w) {
    size_t n = strlen(w);
    if (p->i + n > p->n || memcmp(p->s + p->i, w, n)) return 0;
    p->i += n;
    return 1;
}

// Parses one value, writing it to `out` as serde_json would.
static int value(parser_t *p, buf_t *out, int *kind, double *num) {
    ws(p);
    int c = peek(p);
    *num = 0;
    if (c == -1) return fail(p, "EOF while parsing a value");
    if (c == '{') {
        members_t ms = {0};
        *kind = J_OBJ;
        int r = object(p, &ms);
        if (r == 0) {
            putc_(out, '{');
            for (size_t j = 0; j < ms.len; j++) {
                if (j) putc_(out, ',');
                write_str(out, (const uint8_t *)ms.m[j].key.p, ms.m[j].key.len);
                putc_(out, ':');
                put(out, ms.m[j].canon.p, ms.m[j].canon.len);
            }
            putc_(out, '}');
        }
        members_free(&ms);
        return r;
    }
    if (c == '[') {
        *kind = J_ARR;
        if (enter(p)) return -1;
        p->i++;
        putc_(out, '[');
        ws(p);
        if (peek(p) == ']') { p->i++; p->depth++; putc_(out, ']'); return 0; }
        for (int first = 1;; first = 0) {
            int k;
            double d;
            if (!first) putc_(out, ',');
            if (value(p, out, &k, &d)) return -1;
            ws(p);
            int e = peek(p);
            p->i++;
            if (e == ']') { p->depth++; putc_(out, ']'); return 0; }
            if (e != ',') return fail(p, "expected `,` or `]`");
        }
    }
    if (c == '"') {
        buf_t s = {0};
        *kind = J_STR;
        int r = string(p, &s);
        if (r == 0) write_str(out, (const uint8_t *)s.p, s.len);
        buf_free(&s);
        return r;
    }
    if (c == '-' || is_digit(c)) { *kind = J_NUM; return number(p, out, num); }
    if (word(p, "true")) { *kind = J_BOOL; puts_(out, "true"); return 0; }
    if (word(p, "false")) { *kind = J_BOOL; puts_(out, "false"); return 0; }
    if (word(p, "null")) { *kind = J_NULL; puts_(out, "null"); return 0; }
    return fail(p, "expected value");
}

static const char *kind_of(int kind) {
    static const char *names[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
    return names[kind];
}

static void set_msg(buf_t *msg, const char *a, const char *b) {
    msg->len = 0;
    puts_(msg, a);
    if (b) puts_(msg, b);
}

static const member_t *find(const members_t *ms, const char *key) {
    size_t n = strlen(key);
    for (size_t j = 0; j < ms->len; j++)
        if (ms->m[j].key.len == n && !memcmp(ms->m[j].key.p, key, n)) return &ms->m[j];
    return NULL;
}

static void put_field(buf_t *out, const member_t *m) {
    if (m) put(out, m->canon.p, m->canon.len);
    else puts_(out, "null");
}

int calorie_check(const uint8_t *v, size_t n, double threshold, buf_t *out, buf_t *msg) {
    parser_t p = {v, n, 0, 128, NULL};
    members_t ms = {0};
    int kind = J_NULL, rc;
    size_t i = 0;
    while (i < n)
        if (utf8_next(v, n, &i) < 0) { p.err = "invalid unicode code point"; break; }
    if (!p.err) {
        ws(&p);
        if (peek(&p) == '{') {
            kind = J_OBJ;
            object(&p, &ms);
        } else {
            buf_t scratch = {0};
            double d;
            value(&p, &scratch, &kind, &d);
            buf_free(&scratch);
        }
        if (!p.err) {
            ws(&p);
            if (p.i != p.n) p.err = "trailing characters";
        }
    }
    if (p.err) {
        set_msg(msg, "value is not valid JSON: ", p.err);
        rc = CALORIE_INVALID;
    } else if (kind != J_OBJ) {
        set_msg(msg, "recipe JSON must be an object, got ", kind_of(kind));
        rc = CALORIE_INVALID;
    } else {
        const member_t *cal = find(&ms, "calories");
        if (!cal || cal->kind == J_NULL) {
            set_msg(msg, "recipe has no calories", NULL);
            rc = CALORIE_INVALID;
        } else if (cal->kind != J_NUM) {
            set_msg(msg, "`calories` must be a number, got ", kind_of(cal->kind));
            rc = CALORIE_INVALID;
        } else if (cal->num <= threshold) {
            rc = CALORIE_QUIET;
        } else {
            out->len = 0;
            puts_(out, "{\"name\":");
            put_field(out, find(&ms, "name"));
            puts_(out, ",\"calories\":");
            put_field(out, cal);
            puts_(out, ",\"threshold\":");
            if (threshold == trunc(threshold) && fabs(threshold) < 9.0e15) {
                char t[32];
                snprintf(t, sizeof t, "%lld", (long long)threshold);
                puts_(out, t);
            } else {
                fmt_f64(out, threshold);
            }
            puts_(out, ",\"url\":");
            put_field(out, find(&ms, "url"));
            putc_(out, '}');
            rc = CALORIE_ALERT;
        }
    }
    members_free(&ms);
    return rc;
}

// ---- parameters ---------------------------------------------------------------

// Rust's `char::is_whitespace`, which `str::trim` uses.
static int rust_ws(int32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

// Rust's `{:?}` of a string, for ASCII and common text.
static void rust_debug(buf_t *out, const uint8_t *s, size_t n) {
    putc_(out, '"');
    size_t i = 0;
    while (i < n) {
        size_t at = i;
        int32_t c = utf8_next(s, n, &i);
        char t[16];
        if (c < 0) { i = at + 1; continue; }
        if (c == '"' || c == '\\') { putc_(out, '\\'); putc_(out, c); }
        else if (c == '\t') puts_(out, "\\t");
        else if (c == '\r') puts_(out, "\\r");
        else if (c == '\n') puts_(out, "\\n");
        else if (c == 0) puts_(out, "\\0");
        else if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) { snprintf(t, sizeof t, "\\u{%x}", (unsigned)c); puts_(out, t); }
        else put(out, s + at, i - at);
    }
    putc_(out, '"');
}

// Rust's `str::parse::<f64>` of trimmed text, accepting finite >= 0 only.
static int parse_threshold(const uint8_t *s, size_t n, double *t) {
    size_t a = 0, b = n;
    for (;;) { // trim the front
        size_t i = a;
        if (i >= b) break;
        int32_t c = utf8_next(s, b, &i);
        if (c < 0 || !rust_ws(c)) break;
        a = i;
    }
    while (b > a) { // trim the back: step to the last code point's start
        size_t st = b - 1;
        while (st > a && (s[st] & 0xc0) == 0x80) st--;
        size_t i = st;
        int32_t c = utf8_next(s, b, &i);
        if (c < 0 || !rust_ws(c)) break;
        b = st;
    }
    size_t i = a, digits = 0;
    if (i < b && (s[i] == '+' || s[i] == '-')) i++;
    while (i < b && is_digit(s[i])) { i++; digits++; }
    if (i < b && s[i] == '.') { i++; while (i < b && is_digit(s[i])) { i++; digits++; } }
    if (!digits) return -1;
    if (i < b && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < b && (s[i] == '+' || s[i] == '-')) i++;
        size_t d = i;
        while (i < b && is_digit(s[i])) i++;
        if (i == d) return -1;
    }
    if (i != b) return -1;
    char *text = malloc(b - a + 1);
    if (!text) abort();
    memcpy(text, s + a, b - a);
    text[b - a] = 0;
    double v = strtod(text, NULL);
    free(text);
    if (!isfinite(v) || !(v >= 0.0)) return -1;
    *t = v;
    return 0;
}

int calorie_param(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen, double *threshold, buf_t *msg) {
    if (klen == 9 && !memcmp(key, "threshold", 9)) {
        if (parse_threshold(val, vlen, threshold) == 0) return 0;
        set_msg(msg, "calorie-alert: parameter `threshold` must be a non-negative number, got ", NULL);
        rust_debug(msg, val, vlen);
        return -1;
    }
    set_msg(msg, "calorie-alert: unknown parameter `", NULL);
    put(msg, key, klen);
    puts_(msg, "` (known parameters: threshold)");
    return -1;
}
