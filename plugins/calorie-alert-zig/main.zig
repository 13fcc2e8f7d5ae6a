//! calorie-alert in Zig: flags recipes whose calories exceed a threshold.
//!
//! Behaves exactly like the Rust `plugins/calorie-alert` (the reference) and
//! is checked against the same vectors (`tests/vectors/calorie-alert.json`).
//! JSON is parsed by hand the way serde_json parses it (strict UTF-8, depth
//! limit 128, u64/i64/f64 numbers) and written the way serde_json writes a
//! `Value` (compact, object keys in byte order, the last of repeated keys,
//! ryu's float layout). The component ABI comes from `wit-bindgen c`
//! (`transform.h`); everything else is Zig.
const std = @import("std");
const c = @import("transform.zig");

const Allocator = std.mem.Allocator;
const List = std.ArrayList(u8);

/// Scratch memory for one call, reset at the start of the next.
var arena_state = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
var threshold: f64 = 500.0;

const Kind = enum { null, boolean, number, string, array, object };

fn kindOf(k: Kind) []const u8 {
    return switch (k) {
        .null => "null",
        .boolean => "a boolean",
        .number => "a number",
        .string => "a string",
        .array => "an array",
        .object => "an object",
    };
}

const Error = error{ BadJson, OutOfMemory };

/// One object member: the key's bytes and the value as serde_json writes it.
const Member = struct {
    key: []const u8,
    canon: []const u8,
    kind: Kind,
    num: f64,
    index: usize,

    fn lessThan(_: void, x: Member, y: Member) bool {
        return switch (std.mem.order(u8, x.key, y.key)) {
            .lt => true,
            .gt => false,
            .eq => x.index < y.index,
        };
    }
};

/// Decodes one code point at s[i.*]; null when the bytes are not strict UTF-8.
fn utf8Next(s: []const u8, i: *usize) ?u21 {
    const b = s[i.*];
    var cp: u32 = undefined;
    var more: usize = undefined;
    var min: u32 = undefined;
    if (b < 0x80) {
        i.* += 1;
        return b;
    } else if (b >= 0xc2 and b <= 0xdf) {
        cp = b & 0x1f;
        more = 1;
        min = 0x80;
    } else if (b >= 0xe0 and b <= 0xef) {
        cp = b & 0x0f;
        more = 2;
        min = 0x800;
    } else if (b >= 0xf0 and b <= 0xf4) {
        cp = b & 0x07;
        more = 3;
        min = 0x10000;
    } else return null;
    if (i.* + more >= s.len) return null;
    var j: usize = 1;
    while (j <= more) : (j += 1) {
        const d = s[i.* + j];
        if (d & 0xc0 != 0x80) return null;
        cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min or cp > 0x10ffff or (cp >= 0xd800 and cp <= 0xdfff)) return null;
    i.* += more + 1;
    return @intCast(cp);
}

fn putUtf8(a: Allocator, out: *List, cp: u21) Error!void {
    var t: [4]u8 = undefined;
    const n = std.unicode.utf8Encode(cp, &t) catch unreachable;
    try out.appendSlice(a, t[0..n]);
}

/// ryu's layout of digits × 10^k.
fn layout(a: Allocator, out: *List, digits: []const u8, k: i32) Error!void {
    const n: i32 = @intCast(digits.len);
    const kk = n + k;
    if (k >= 0 and kk <= 16) {
        try out.appendSlice(a, digits);
        try out.appendNTimes(a, '0', @intCast(k));
        try out.appendSlice(a, ".0");
    } else if (kk > 0 and kk <= 16) {
        const at: usize = @intCast(kk);
        try out.appendSlice(a, digits[0..at]);
        try out.append(a, '.');
        try out.appendSlice(a, digits[at..]);
    } else if (kk > -5 and kk <= 0) {
        try out.appendSlice(a, "0.");
        try out.appendNTimes(a, '0', @intCast(-kk));
        try out.appendSlice(a, digits);
    } else {
        try out.append(a, digits[0]);
        if (n > 1) {
            try out.append(a, '.');
            try out.appendSlice(a, digits[1..]);
        }
        var e: [16]u8 = undefined;
        // serde_json writes a positive exponent with its sign: 1e+16.
        const sign = if (kk - 1 >= 0) "+" else "";
        try out.appendSlice(a, std.fmt.bufPrint(&e, "e{s}{d}", .{ sign, kk - 1 }) catch unreachable);
    }
}

/// Writes a finite f64 the way serde_json (ryu) does.
fn fmtF64(a: Allocator, out: *List, x: f64) Error!void {
    if (x == 0) return out.appendSlice(a, if (std.math.signbit(x)) "-0.0" else "0.0");
    if (x < 0) try out.append(a, '-');
    var buf: [64]u8 = undefined;
    // `{e}` prints the shortest digits that read back as the same f64.
    const sci = std.fmt.bufPrint(&buf, "{e}", .{@abs(x)}) catch unreachable;
    const e_at = std.mem.indexOfScalar(u8, sci, 'e').?;
    var digits: [24]u8 = undefined;
    var n: usize = 0;
    for (sci[0..e_at]) |ch| {
        if (ch != '.') {
            digits[n] = ch;
            n += 1;
        }
    }
    const e = std.fmt.parseInt(i32, sci[e_at + 1 ..], 10) catch unreachable;
    while (n > 1 and digits[n - 1] == '0') n -= 1;
    try layout(a, out, digits[0..n], e - @as(i32, @intCast(n - 1)));
}

fn writeStr(a: Allocator, out: *List, s: []const u8) Error!void {
    const hex = "0123456789abcdef";
    try out.append(a, '"');
    for (s) |ch| {
        switch (ch) {
            '"' => try out.appendSlice(a, "\\\""),
            '\\' => try out.appendSlice(a, "\\\\"),
            0x08 => try out.appendSlice(a, "\\b"),
            0x0c => try out.appendSlice(a, "\\f"),
            '\n' => try out.appendSlice(a, "\\n"),
            '\r' => try out.appendSlice(a, "\\r"),
            '\t' => try out.appendSlice(a, "\\t"),
            else => if (ch < 0x20) {
                try out.appendSlice(a, &[_]u8{ '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] });
            } else try out.append(a, ch),
        }
    }
    try out.append(a, '"');
}

fn isDigit(ch: u8) bool {
    return ch >= '0' and ch <= '9';
}

const Parser = struct {
    a: Allocator,
    s: []const u8,
    i: usize = 0,
    depth: u32 = 128, // serde_json's recursion limit
    msg: []const u8 = "",

    fn fail(p: *Parser, m: []const u8) Error {
        if (p.msg.len == 0) p.msg = m;
        return error.BadJson;
    }

    fn ws(p: *Parser) void {
        while (p.i < p.s.len) : (p.i += 1) {
            switch (p.s[p.i]) {
                ' ', '\t', '\n', '\r' => {},
                else => return,
            }
        }
    }

    fn peek(p: *Parser) ?u8 {
        return if (p.i < p.s.len) p.s[p.i] else null;
    }

    fn enter(p: *Parser) Error!void {
        p.depth -= 1;
        if (p.depth == 0) return p.fail("recursion limit exceeded");
    }

    fn hex4(p: *Parser) Error!u21 {
        if (p.i + 4 > p.s.len) return p.fail("EOF while parsing a string");
        const v = std.fmt.parseInt(u16, p.s[p.i .. p.i + 4], 16) catch return p.fail("invalid escape");
        // parseInt takes a sign or `_`; serde_json takes four hex digits only.
        for (p.s[p.i .. p.i + 4]) |ch| if (!std.ascii.isHex(ch)) return p.fail("invalid escape");
        p.i += 4;
        return v;
    }

    /// Parses a string (at its opening quote) into its decoded bytes.
    fn string(p: *Parser, out: *List) Error!void {
        p.i += 1;
        while (true) {
            if (p.i >= p.s.len) return p.fail("EOF while parsing a string");
            const ch = p.s[p.i];
            p.i += 1;
            switch (ch) {
                '"' => return,
                '\\' => {
                    if (p.i >= p.s.len) return p.fail("EOF while parsing a string");
                    const e = p.s[p.i];
                    p.i += 1;
                    switch (e) {
                        '"', '\\', '/' => try out.append(p.a, e),
                        'b' => try out.append(p.a, 0x08),
                        'f' => try out.append(p.a, 0x0c),
                        'n' => try out.append(p.a, '\n'),
                        'r' => try out.append(p.a, '\r'),
                        't' => try out.append(p.a, '\t'),
                        'u' => {
                            var u = try p.hex4();
                            if (u >= 0xdc00 and u <= 0xdfff) return p.fail("lone leading surrogate in hex escape");
                            if (u >= 0xd800 and u <= 0xdbff) {
                                if (p.i + 2 > p.s.len or p.s[p.i] != '\\' or p.s[p.i + 1] != 'u')
                                    return p.fail("unexpected end of hex escape");
                                p.i += 2;
                                const lo = try p.hex4();
                                if (lo < 0xdc00 or lo > 0xdfff) return p.fail("lone leading surrogate in hex escape");
                                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                            }
                            try putUtf8(p.a, out, u);
                        },
                        else => return p.fail("invalid escape"),
                    }
                },
                else => {
                    if (ch < 0x20) return p.fail("control character (\\u0000-\\u001F) found while parsing a string");
                    try out.append(p.a, ch); // the input was checked to be UTF-8 as a whole
                },
            }
        }
    }

    fn digits(p: *Parser, i: *usize) Error!void {
        const d = i.*;
        while (i.* < p.s.len and isDigit(p.s[i.*])) i.* += 1;
        if (i.* == d) return p.fail("invalid number");
    }

    fn number(p: *Parser, out: *List, num: *f64) Error!void {
        const s = p.s;
        const start = p.i;
        var i = p.i;
        var integer = true;
        if (s[i] == '-') i += 1;
        if (i < s.len and s[i] == '0') i += 1 else try p.digits(&i);
        if (i < s.len and s[i] == '.') {
            integer = false;
            i += 1;
            try p.digits(&i);
        }
        if (i < s.len and (s[i] == 'e' or s[i] == 'E')) {
            integer = false;
            i += 1;
            if (i < s.len and (s[i] == '+' or s[i] == '-')) i += 1;
            try p.digits(&i);
        }
        // serde_json rejects a digit straight after a leading zero.
        if (i < s.len and isDigit(s[i])) return p.fail("invalid number");
        p.i = i;
        const text = s[start..i];
        if (integer) {
            const neg = text[0] == '-';
            if (std.fmt.parseInt(u64, text[@intFromBool(neg)..], 10)) |sig| {
                if (!neg) {
                    try out.appendSlice(p.a, text);
                    num.* = @floatFromInt(sig);
                    return;
                }
                if (sig >= 1 and sig <= (@as(u64, 1) << 63)) {
                    try out.appendSlice(p.a, text);
                    const v: i64 = if (sig == (@as(u64, 1) << 63)) std.math.minInt(i64) else -@as(i64, @intCast(sig));
                    num.* = @floatFromInt(v);
                    return;
                }
            } else |_| {}
        }
        const f = std.fmt.parseFloat(f64, text) catch return p.fail("invalid number");
        if (std.math.isInf(f)) return p.fail("number out of range");
        try fmtF64(p.a, out, f);
        num.* = f;
    }

    /// Parses an object (at its `{`) into members sorted by key, keeping the
    /// last of each repeated key, as serde_json's BTreeMap does.
    fn object(p: *Parser) Error![]Member {
        try p.enter();
        p.i += 1;
        var ms: std.ArrayList(Member) = .empty;
        p.ws();
        if (p.peek() == '}') {
            p.i += 1;
            p.depth += 1;
            return ms.items;
        }
        while (true) {
            p.ws();
            if (p.peek() != '"') return p.fail("key must be a string");
            var key: List = .empty;
            try p.string(&key);
            p.ws();
            if (p.peek() != ':') return p.fail("expected `:`");
            p.i += 1;
            var canon: List = .empty;
            var kind: Kind = .null;
            var num: f64 = 0;
            try p.value(&canon, &kind, &num);
            try ms.append(p.a, .{ .key = key.items, .canon = canon.items, .kind = kind, .num = num, .index = ms.items.len });
            p.ws();
            const ch = p.peek();
            p.i += 1;
            if (ch == '}') break;
            if (ch != ',') return p.fail("expected `,` or `}`");
        }
        p.depth += 1;
        std.mem.sort(Member, ms.items, {}, Member.lessThan);
        var w: usize = 0;
        for (ms.items, 0..) |m, r| {
            if (r + 1 < ms.items.len and std.mem.eql(u8, m.key, ms.items[r + 1].key)) continue;
            ms.items[w] = m;
            w += 1;
        }
        return ms.items[0..w];
    }

    fn word(p: *Parser, w: []const u8) bool {
        if (!std.mem.startsWith(u8, p.s[p.i..], w)) return false;
        p.i += w.len;
        return true;
    }

    /// Parses one value, writing it to `out` as serde_json would.
    fn value(p: *Parser, out: *List, kind: *Kind, num: *f64) Error!void {
        p.ws();
        const ch = p.peek() orelse return p.fail("EOF while parsing a value");
        switch (ch) {
            '{' => {
                kind.* = .object;
                const ms = try p.object();
                try out.append(p.a, '{');
                for (ms, 0..) |m, j| {
                    if (j > 0) try out.append(p.a, ',');
                    try writeStr(p.a, out, m.key);
                    try out.append(p.a, ':');
                    try out.appendSlice(p.a, m.canon);
                }
                try out.append(p.a, '}');
            },
            '[' => {
                kind.* = .array;
                try p.enter();
                p.i += 1;
                try out.append(p.a, '[');
                p.ws();
                if (p.peek() == ']') {
                    p.i += 1;
                } else {
                    var first = true;
                    while (true) : (first = false) {
                        if (!first) try out.append(p.a, ',');
                        var k: Kind = .null;
                        var d: f64 = 0;
                        try p.value(out, &k, &d);
                        p.ws();
                        const e = p.peek();
                        p.i += 1;
                        if (e == ']') break;
                        if (e != ',') return p.fail("expected `,` or `]`");
                    }
                }
                p.depth += 1;
                try out.append(p.a, ']');
            },
            '"' => {
                kind.* = .string;
                var s: List = .empty;
                try p.string(&s);
                try writeStr(p.a, out, s.items);
            },
            '-', '0'...'9' => {
                kind.* = .number;
                try p.number(out, num);
            },
            else => {
                const words = [_]struct { []const u8, Kind }{ .{ "true", .boolean }, .{ "false", .boolean }, .{ "null", .null } };
                for (words) |wk| {
                    if (p.word(wk[0])) {
                        kind.* = wk[1];
                        return out.appendSlice(p.a, wk[0]);
                    }
                }
                return p.fail("expected value");
            },
        }
    }
};

fn find(ms: []const Member, key: []const u8) ?Member {
    for (ms) |m| if (std.mem.eql(u8, m.key, key)) return m;
    return null;
}

const Outcome = union(enum) { alert: []const u8, quiet, invalid: []const u8 };

/// Checks one recipe against the threshold.
fn checkRecipe(a: Allocator, value: []const u8, t: f64) Error!Outcome {
    var p = Parser{ .a = a, .s = value };
    var kind: Kind = .null;
    var ms: []Member = &.{};
    parse: {
        var i: usize = 0;
        while (i < value.len) {
            if (utf8Next(value, &i) == null) {
                p.msg = "invalid unicode code point";
                break :parse;
            }
        }
        p.ws();
        if (p.peek() == '{') {
            kind = .object;
            ms = p.object() catch |e| if (e == error.BadJson) break :parse else return e;
        } else {
            var scratch: List = .empty;
            var d: f64 = 0;
            p.value(&scratch, &kind, &d) catch |e| if (e == error.BadJson) break :parse else return e;
        }
        p.ws();
        if (p.i != p.s.len) p.msg = "trailing characters";
    }
    if (p.msg.len > 0) return .{ .invalid = try std.mem.concat(a, u8, &.{ "value is not valid JSON: ", p.msg }) };
    if (kind != .object) return .{ .invalid = try std.mem.concat(a, u8, &.{ "recipe JSON must be an object, got ", kindOf(kind) }) };
    const cal = find(ms, "calories") orelse return .{ .invalid = "recipe has no calories" };
    if (cal.kind == .null) return .{ .invalid = "recipe has no calories" };
    if (cal.kind != .number) return .{ .invalid = try std.mem.concat(a, u8, &.{ "`calories` must be a number, got ", kindOf(cal.kind) }) };
    if (cal.num <= t) return .quiet;
    var out: List = .empty;
    try out.appendSlice(a, "{\"name\":");
    try out.appendSlice(a, if (find(ms, "name")) |m| m.canon else "null");
    try out.appendSlice(a, ",\"calories\":");
    try out.appendSlice(a, cal.canon);
    try out.appendSlice(a, ",\"threshold\":");
    if (t == @trunc(t) and @abs(t) < 9.0e15) {
        var b: [32]u8 = undefined;
        try out.appendSlice(a, std.fmt.bufPrint(&b, "{d}", .{@as(i64, @intFromFloat(t))}) catch unreachable);
    } else try fmtF64(a, &out, t);
    try out.appendSlice(a, ",\"url\":");
    try out.appendSlice(a, if (find(ms, "url")) |m| m.canon else "null");
    try out.append(a, '}');
    return .{ .alert = out.items };
}

/// Rust's `char::is_whitespace`, which `str::trim` uses.
fn rustWs(ch: u21) bool {
    return (ch >= 0x09 and ch <= 0x0d) or ch == 0x20 or ch == 0x85 or ch == 0xa0 or ch == 0x1680 or
        (ch >= 0x2000 and ch <= 0x200a) or ch == 0x2028 or ch == 0x2029 or ch == 0x202f or
        ch == 0x205f or ch == 0x3000;
}

/// Rust's `{:?}` of a string, for ASCII and common text.
fn rustDebug(a: Allocator, out: *List, s: []const u8) Error!void {
    try out.append(a, '"');
    var i: usize = 0;
    while (i < s.len) {
        const at = i;
        const ch = utf8Next(s, &i) orelse {
            i = at + 1;
            continue;
        };
        switch (ch) {
            '"', '\\' => try out.appendSlice(a, &[_]u8{ '\\', @intCast(ch) }),
            '\t' => try out.appendSlice(a, "\\t"),
            '\r' => try out.appendSlice(a, "\\r"),
            '\n' => try out.appendSlice(a, "\\n"),
            0 => try out.appendSlice(a, "\\0"),
            else => if (ch < 0x20 or (ch >= 0x7f and ch <= 0x9f)) {
                var b: [16]u8 = undefined;
                try out.appendSlice(a, std.fmt.bufPrint(&b, "\\u{{{x}}}", .{ch}) catch unreachable);
            } else try out.appendSlice(a, s[at..i]),
        }
    }
    try out.append(a, '"');
}

/// Rust's `str::parse::<f64>` of trimmed text, accepting finite >= 0 only.
fn parseThreshold(s: []const u8) ?f64 {
    var a: usize = 0;
    var b: usize = s.len;
    while (a < b) {
        var i = a;
        const ch = utf8Next(s[0..b], &i) orelse break;
        if (!rustWs(ch)) break;
        a = i;
    }
    while (b > a) {
        var st = b - 1;
        while (st > a and s[st] & 0xc0 == 0x80) st -= 1;
        var i = st;
        const ch = utf8Next(s[0..b], &i) orelse break;
        if (!rustWs(ch)) break;
        b = st;
    }
    const t = s[a..b];
    var i: usize = 0;
    var ndigits: usize = 0;
    if (i < t.len and (t[i] == '+' or t[i] == '-')) i += 1;
    while (i < t.len and isDigit(t[i])) : (i += 1) ndigits += 1;
    if (i < t.len and t[i] == '.') {
        i += 1;
        while (i < t.len and isDigit(t[i])) : (i += 1) ndigits += 1;
    }
    if (ndigits == 0) return null;
    if (i < t.len and (t[i] == 'e' or t[i] == 'E')) {
        i += 1;
        if (i < t.len and (t[i] == '+' or t[i] == '-')) i += 1;
        const d = i;
        while (i < t.len and isDigit(t[i])) i += 1;
        if (i == d) return null;
    }
    if (i != t.len) return null;
    const v = std.fmt.parseFloat(f64, t) catch return null;
    if (!std.math.isFinite(v) or !(v >= 0.0)) return null;
    return v;
}

/// Copies bytes into malloc'd memory, which the generated post-return frees.
fn cBytes(s: []const u8) [*c]u8 {
    if (s.len == 0) return null;
    const p: [*]u8 = @ptrCast(std.c.malloc(s.len) orelse @panic("out of memory"));
    @memcpy(p[0..s.len], s);
    return p;
}

fn initParams(a: Allocator, params: []const c.transform_tuple2_string_string_t) Error!?[]const u8 {
    var t: f64 = 500.0;
    for (params) |kv| {
        const key = kv.f0.ptr[0..kv.f0.len];
        const val = if (kv.f1.len == 0) "" else kv.f1.ptr[0..kv.f1.len];
        if (std.mem.eql(u8, key, "threshold")) {
            t = parseThreshold(val) orelse {
                var msg: List = .empty;
                try msg.appendSlice(a, "calorie-alert: parameter `threshold` must be a non-negative number, got ");
                try rustDebug(a, &msg, val);
                return msg.items;
            };
        } else {
            return try std.mem.concat(a, u8, &.{ "calorie-alert: unknown parameter `", key, "` (known parameters: threshold)" });
        }
    }
    threshold = t;
    return null;
}

export fn exports_transform_init(params: [*c]c.transform_list_tuple2_string_string_t, err: [*c]c.transform_string_t) bool {
    defer c.transform_list_tuple2_string_string_free(params);
    _ = arena_state.reset(.retain_capacity);
    const list = if (params.*.len == 0) &[_]c.transform_tuple2_string_string_t{} else params.*.ptr[0..params.*.len];
    const msg = initParams(arena_state.allocator(), list) catch @panic("out of memory");
    if (msg) |m| {
        err.* = .{ .ptr = cBytes(m), .len = m.len };
        return false;
    }
    return true;
}

export fn exports_transform_process(rec: [*c]c.transform_input_t, ret: [*c]c.transform_list_output_t, err: [*c]c.transform_process_error_t) bool {
    defer c.transform_input_free(rec);
    _ = arena_state.reset(.retain_capacity);
    const a = arena_state.allocator();
    const value = if (rec.*.value.len == 0) "" else rec.*.value.ptr[0..rec.*.value.len];
    ret.* = .{ .ptr = null, .len = 0 };
    switch (checkRecipe(a, value, threshold) catch @panic("out of memory")) {
        .quiet => return true,
        .invalid => |m| {
            err.* = .{ .kind = c.SLUICE_PLUGIN_TYPES_ERROR_KIND_INVALID, .message = .{ .ptr = cBytes(m), .len = m.len } };
            return false;
        },
        .alert => |v| {
            const o: *c.transform_output_t = @ptrCast(@alignCast(std.c.calloc(1, @sizeOf(c.transform_output_t)) orelse @panic("out of memory")));
            o.key = rec.*.key; // moved: the input no longer owns it
            rec.*.key.is_some = false;
            o.value = .{ .ptr = cBytes(v), .len = v.len };
            ret.* = .{ .ptr = o, .len = 1 };
            return true;
        },
    }
}
