// calorie-alert in JavaScript: flags recipes whose calories exceed a threshold.
//
// Behaves exactly like the Rust `plugins/calorie-alert` (the reference) and is
// checked against the same vectors (`tests/vectors/calorie-alert.json`):
// - `calories > threshold` emits one output on the default route with the
//   input's key and `{"name":…,"calories":…,"threshold":…,"url":…}`, written
//   the way serde_json writes it (compact, object keys sorted, numbers echoed
//   as serde_json holds them); otherwise nothing.
// - Bad JSON, a non-object, missing/null or non-number calories are `invalid`
//   errors with the reference's messages.
// - Parameter `threshold` (default 500, a non-negative number); anything else
//   fails `init`, naming the parameter.
//
// JSON is parsed by hand: JSON.parse turns every number into a double (so
// 12345678901234567890 would change) and accepts lone surrogates.

const DEFAULT_THRESHOLD = 500;
const U64_MAX = 18446744073709551615n;
const I64_MIN = -9223372036854775808n;

let threshold = DEFAULT_THRESHOLD;

class BadJson extends Error {}

// A JSON number as serde_json holds it (u64, i64 or f64).
class Num {
  constructor(text, value) {
    this.text = text; // canonical output text
    this.value = value; // as f64, for comparisons
  }
}

// serde_json rejects any invalid UTF-8: check the bytes strictly (no
// overlongs, no surrogates, nothing past U+10FFFF), then decode natively.
function checkUtf8(b) {
  let i = 0;
  const n = b.length;
  while (i < n) {
    const c = b[i];
    if (c < 0x80) { i++; continue; }
    let more, min, cp;
    if (c >= 0xc2 && c <= 0xdf) { cp = c & 0x1f; more = 1; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { cp = c & 0x0f; more = 2; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { cp = c & 0x07; more = 3; min = 0x10000; }
    else return false;
    if (i + more >= n) return false;
    for (let j = 1; j <= more; j++) {
      const d = b[i + j];
      if ((d & 0xc0) !== 0x80) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += more + 1;
  }
  return true;
}

// ignoreBOM keeps a leading BOM in the text, where serde_json rejects it.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const encoder = new TextEncoder();

const isDigit = (c) => c >= 0x30 && c <= 0x39;
const SIMPLE_ESCAPES = { 0x22: '"', 0x5c: "\\", 0x2f: "/", 0x62: "\b", 0x66: "\f", 0x6e: "\n", 0x72: "\r", 0x74: "\t" };

// Parses a JS string (decoded from valid UTF-8) the way serde_json does.
class Parser {
  constructor(text) {
    this.s = text;
    this.i = 0;
    this.depth = 128; // serde_json's recursion limit
  }
  at(i) { return i < this.s.length ? this.s.charCodeAt(i) : -1; }
  ws() {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
    this.i = i;
  }
  peek() { return this.at(this.i); }
  word(w) {
    if (!this.s.startsWith(w, this.i)) return false;
    this.i += w.length;
    return true;
  }
  value() {
    this.ws();
    const c = this.peek();
    if (c === -1) throw new BadJson("EOF while parsing a value");
    if (c === 0x7b) return this.obj();
    if (c === 0x5b) return this.arr();
    if (c === 0x22) return this.string();
    if (c === 0x2d || isDigit(c)) return this.number();
    if (this.word("true")) return true;
    if (this.word("false")) return false;
    if (this.word("null")) return null;
    throw new BadJson("expected value");
  }
  enter() {
    if (--this.depth === 0) throw new BadJson("recursion limit exceeded");
  }
  obj() {
    this.enter();
    this.i++;
    const out = new Map(); // a repeated key: the last one wins
    this.ws();
    if (this.peek() === 0x7d) { this.i++; this.depth++; return out; }
    for (;;) {
      this.ws();
      if (this.peek() !== 0x22) throw new BadJson("key must be a string");
      const k = this.string();
      this.ws();
      if (this.peek() !== 0x3a) throw new BadJson("expected `:`");
      this.i++;
      out.set(k, this.value());
      this.ws();
      const c = this.peek();
      this.i++;
      if (c === 0x7d) { this.depth++; return out; }
      if (c !== 0x2c) throw new BadJson("expected `,` or `}`");
    }
  }
  arr() {
    this.enter();
    this.i++;
    const out = [];
    this.ws();
    if (this.peek() === 0x5d) { this.i++; this.depth++; return out; }
    for (;;) {
      out.push(this.value());
      this.ws();
      const c = this.peek();
      this.i++;
      if (c === 0x5d) { this.depth++; return out; }
      if (c !== 0x2c) throw new BadJson("expected `,` or `]`");
    }
  }
  hex4() {
    let v = 0;
    for (let j = 0; j < 4; j++) {
      const c = this.at(this.i + j);
      let d;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else throw new BadJson("invalid escape");
      v = v * 16 + d;
    }
    this.i += 4;
    return v;
  }
  string() {
    const s = this.s;
    let i = this.i + 1;
    let out = "";
    let run = i; // start of the current run of plain characters
    for (;;) {
      if (i >= s.length) throw new BadJson("EOF while parsing a string");
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        this.i = i + 1;
        return out + s.slice(run, i);
      }
      if (c === 0x5c) {
        out += s.slice(run, i);
        const e = this.at(i + 1);
        const simple = SIMPLE_ESCAPES[e];
        if (simple !== undefined) {
          out += simple;
          i += 2;
        } else if (e === 0x75) {
          this.i = i + 2;
          let u = this.hex4();
          if (u >= 0xdc00 && u <= 0xdfff) throw new BadJson("lone leading surrogate in hex escape");
          if (u >= 0xd800 && u <= 0xdbff) {
            if (this.at(this.i) !== 0x5c || this.at(this.i + 1) !== 0x75) throw new BadJson("unexpected end of hex escape");
            this.i += 2;
            const lo = this.hex4();
            if (lo < 0xdc00 || lo > 0xdfff) throw new BadJson("lone leading surrogate in hex escape");
            u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
          }
          out += String.fromCodePoint(u);
          i = this.i;
        } else throw new BadJson("invalid escape");
        run = i;
      } else if (c < 0x20) {
        throw new BadJson("control character (\\u0000-\\u001F) found while parsing a string");
      } else i++;
    }
  }
  number() {
    const s = this.s;
    const start = this.i;
    let i = start;
    const digits = () => {
      const d = i;
      while (isDigit(s.charCodeAt(i))) i++;
      if (i === d) throw new BadJson("invalid number");
    };
    if (s.charCodeAt(i) === 0x2d) i++;
    if (s.charCodeAt(i) === 0x30) i++;
    else digits();
    let integer = true;
    if (s.charCodeAt(i) === 0x2e) { integer = false; i++; digits(); }
    const e = s.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      integer = false;
      i++;
      const sign = s.charCodeAt(i);
      if (sign === 0x2b || sign === 0x2d) i++;
      digits();
    }
    // serde_json rejects a digit straight after a leading zero.
    if (isDigit(s.charCodeAt(i))) throw new BadJson("invalid number");
    this.i = i;
    const text = s.slice(start, i);
    if (integer) {
      // Up to 15 digits fit a double exactly; longer ones go through BigInt.
      // "-0" is the exception: serde_json holds it as the float -0.0.
      if (text.length <= 15 && text !== "-0") return new Num(text, Number(text));
      const n = BigInt(text);
      if (text[0] !== "-" && n <= U64_MAX) return new Num(text, Number(n));
      if (n < 0n && n >= I64_MIN) return new Num(text, Number(n));
    }
    const f = Number(text);
    if (!Number.isFinite(f)) throw new BadJson("number out of range");
    return new Num(fmtF64(f), f);
  }
}

function parseJson(bytes) {
  if (!checkUtf8(bytes)) throw new BadJson("invalid unicode code point");
  let text = decoder.decode(bytes);
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf && text.charCodeAt(0) !== 0xfeff) text = "\ufeff" + text;
  const p = new Parser(text);
  const v = p.value();
  p.ws();
  if (p.i !== p.s.length) throw new BadJson("trailing characters");
  return v;
}

// Formats a finite double the way serde_json (ryu) does.
function fmtF64(x) {
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  // toExponential() without digits gives the shortest round-trip digits.
  const [mant, exp] = Math.abs(x).toExponential().split("e");
  let digits = mant.replace(".", "");
  let k = parseInt(exp, 10) - (digits.length - 1);
  while (digits.endsWith("0")) { digits = digits.slice(0, -1); k++; }
  return sign + layout(digits, k);
}

// ryu's layout of `digits` × 10^k.
function layout(digits, k) {
  const n = digits.length;
  const kk = n + k;
  if (k >= 0 && kk <= 16) return digits + "0".repeat(k) + ".0";
  if (kk > 0 && kk <= 16) return digits.slice(0, kk) + "." + digits.slice(kk);
  if (kk > -5 && kk <= 0) return "0." + "0".repeat(-kk) + digits;
  // serde_json writes a positive exponent with its sign: 1e+16.
  const exp = kk - 1 >= 0 ? `e+${kk - 1}` : `e${kk - 1}`;
  if (n === 1) return digits + exp;
  return `${digits[0]}.${digits.slice(1)}${exp}`;
}

const NEEDS_ESCAPE = /["\\\u0000-\u001f]/;

function writeStr(s) {
  if (!NEEDS_ESCAPE.test(s)) return '"' + s + '"';
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (c < 0x20) {
      const short = { 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t" }[c];
      out += short || "\\u" + c.toString(16).padStart(4, "0");
    } else out += ch;
  }
  return out + '"';
}

// serde_json's map is a BTreeMap: keys in code point (UTF-8 byte) order,
// which is not JavaScript's UTF-16 order for characters beyond U+FFFF.
function cmpCodePoints(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

function write(v) {
  if (v === null) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (v instanceof Num) return v.text;
  if (typeof v === "string") return writeStr(v);
  if (Array.isArray(v)) return "[" + v.map(write).join(",") + "]";
  const keys = [...v.keys()].sort(cmpCodePoints);
  return "{" + keys.map((k) => writeStr(k) + ":" + write(v.get(k))).join(",") + "}";
}

function kindOf(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return "a boolean";
  if (v instanceof Num) return "a number";
  if (typeof v === "string") return "a string";
  if (Array.isArray(v)) return "an array";
  return "an object";
}

function writeThreshold(t) {
  if (Number.isInteger(t) && Math.abs(t) < 9.0e15) return String(Math.trunc(t) + 0);
  return fmtF64(t);
}

// Rust's `char::is_whitespace`, which `str::trim` uses.
function isRustWs(c) {
  return (c >= 0x09 && c <= 0x0d) || c === 0x20 || c === 0x85 || c === 0xa0 || c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000;
}

function rustTrim(s) {
  const cps = Array.from(s, (c) => c.codePointAt(0));
  let a = 0, b = cps.length;
  while (a < b && isRustWs(cps[a])) a++;
  while (b > a && isRustWs(cps[b - 1])) b--;
  return String.fromCodePoint(...cps.slice(a, b));
}

// Rust's `{:?}` of a string, for ASCII and common text.
function rustDebug(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (c === 9) out += "\\t";
    else if (c === 13) out += "\\r";
    else if (c === 10) out += "\\n";
    else if (c === 0) out += "\\0";
    else if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) out += "\\u{" + c.toString(16) + "}";
    else out += ch;
  }
  return out + '"';
}

// Rust's `str::parse::<f64>` for finite decimal text, else null.
function parseThreshold(value) {
  const s = rustTrim(value);
  if (!/^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/.test(s)) return null;
  const t = Number(s);
  return Number.isFinite(t) && t >= 0 ? t : null;
}

export function init(params) {
  let t = DEFAULT_THRESHOLD;
  for (const [key, value] of params) {
    if (key === "threshold") {
      const v = parseThreshold(value);
      if (v === null) {
        throw "calorie-alert: parameter `threshold` must be a non-negative number, got " + rustDebug(value);
      }
      t = v;
    } else {
      throw `calorie-alert: unknown parameter \`${key}\` (known parameters: threshold)`;
    }
  }
  threshold = t;
}

function checkRecipe(value) {
  let recipe;
  try {
    recipe = parseJson(value);
  } catch (e) {
    if (e instanceof BadJson) throw new Error(`value is not valid JSON: ${e.message}`);
    throw e;
  }
  if (!(recipe instanceof Map)) throw new Error(`recipe JSON must be an object, got ${kindOf(recipe)}`);
  const calories = recipe.has("calories") ? recipe.get("calories") : null;
  if (calories === null) throw new Error("recipe has no calories");
  if (!(calories instanceof Num)) throw new Error(`\`calories\` must be a number, got ${kindOf(calories)}`);
  if (calories.value <= threshold) return null;
  const field = (k) => write(recipe.has(k) ? recipe.get(k) : null);
  return encoder.encode(
    `{"name":${field("name")},"calories":${calories.text},"threshold":${writeThreshold(threshold)},"url":${field("url")}}`,
  );
}

export function process(rec) {
  let alert;
  try {
    alert = checkRecipe(rec.value);
  } catch (e) {
    throw { kind: "invalid", message: e.message };
  }
  if (alert === null) return [];
  return [{ route: undefined, key: rec.key, value: alert, headers: [] }];
}
