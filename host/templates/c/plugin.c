// __NAME__: a sluice plugin. It passes every record through unchanged and
// fails empty records as `invalid`; edit exports_transform_process to do
// real work.
//
// Ownership follows wit-bindgen's C rules: arguments belong to the callee
// (free what you do not move into a result), and results are malloc'd and
// freed by the generated post-return functions.
#include <stdlib.h>
#include <string.h>

#include "transform.h"

static transform_string_t copy_str(const char *a, const uint8_t *b, size_t blen, const char *c) {
    size_t la = strlen(a), lc = strlen(c);
    transform_string_t s = {malloc(la + blen + lc), la + blen + lc};
    if (!s.ptr) abort();
    memcpy(s.ptr, a, la);
    if (blen) memcpy(s.ptr + la, b, blen);
    memcpy(s.ptr + la + blen, c, lc);
    return s;
}

// Called once per instance with the pipeline's `params` (or `sluice plugin
// run --config k=v`). This plugin takes none.
bool exports_transform_init(transform_list_tuple2_string_string_t *params, transform_string_t *err) {
    bool ok = params->len == 0;
    if (!ok) {
        transform_string_t *key = &params->ptr[0].f0;
        *err = copy_str("__NAME__: unknown parameter `", key->ptr, key->len, "`");
    }
    transform_list_tuple2_string_string_free(params);
    return ok;
}

// Called once per record: fill `ret` and return true, or fill `err` and
// return false.
bool exports_transform_process(transform_input_t *rec, transform_list_output_t *ret, transform_process_error_t *err) {
    if (rec->value.len == 0) {
        err->kind = SLUICE_PLUGIN_TYPES_ERROR_KIND_INVALID;
        err->message = copy_str("empty record", NULL, 0, "");
        transform_input_free(rec);
        return false;
    }
    transform_output_t *out = calloc(1, sizeof *out);
    if (!out) abort();
    // Move key, value and headers into the output; free the rest.
    out->key = rec->key;
    out->value = rec->value;
    out->headers = rec->headers;
    transform_string_free(&rec->topic);
    ret->ptr = out;
    ret->len = 1;
    return true;
}
