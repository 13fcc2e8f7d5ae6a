//! __NAME__: a sluice plugin. It passes every record through unchanged and
//! fails empty records as `invalid`; edit `exports_transform_process` to do
//! real work.
//!
//! The ABI comes from `wit-bindgen c` (build.sh translates its header into
//! `transform.zig`). Arguments belong to the callee (free what you do not
//! move into a result); results are malloc'd and freed by the generated
//! post-return functions.
const std = @import("std");
const c = @import("transform.zig");

/// A malloc'd copy of the concatenation of `parts`.
fn cString(parts: []const []const u8) c.transform_string_t {
    var len: usize = 0;
    for (parts) |p| len += p.len;
    const buf: [*]u8 = @ptrCast(std.c.malloc(len) orelse @panic("out of memory"));
    var at: usize = 0;
    for (parts) |p| {
        @memcpy(buf[at .. at + p.len], p);
        at += p.len;
    }
    return .{ .ptr = buf, .len = len };
}

/// Called once per instance with the pipeline's `params` (or `sluice plugin
/// run --config k=v`). This plugin takes none.
export fn exports_transform_init(params: [*c]c.transform_list_tuple2_string_string_t, err: [*c]c.transform_string_t) bool {
    defer c.transform_list_tuple2_string_string_free(params);
    if (params.*.len == 0) return true;
    const key = params.*.ptr[0].f0;
    err.* = cString(&.{ "__NAME__: unknown parameter `", key.ptr[0..key.len], "`" });
    return false;
}

/// Called once per record: fill `ret` and return true, or fill `err` and
/// return false.
export fn exports_transform_process(rec: [*c]c.transform_input_t, ret: [*c]c.transform_list_output_t, err: [*c]c.transform_process_error_t) bool {
    if (rec.*.value.len == 0) {
        c.transform_input_free(rec);
        err.* = .{ .kind = c.SLUICE_PLUGIN_TYPES_ERROR_KIND_INVALID, .message = cString(&.{"empty record"}) };
        return false;
    }
    const out: *c.transform_output_t = @ptrCast(@alignCast(std.c.calloc(1, @sizeOf(c.transform_output_t)) orelse @panic("out of memory")));
    // Move key, value and headers into the output; free the rest.
    out.key = rec.*.key;
    out.value = rec.*.value;
    out.headers = rec.*.headers;
    c.transform_string_free(&rec.*.topic);
    ret.* = .{ .ptr = out, .len = 1 };
    return true;
}
