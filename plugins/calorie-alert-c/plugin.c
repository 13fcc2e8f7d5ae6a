// calorie-alert in C: the component's exports, glued to calorie.c.
//
// Ownership follows wit-bindgen's C rules: arguments belong to the callee
// (freed here, except the key, which moves into the output), and results
// are malloc'd and freed by the generated post-return functions.
#include <stdlib.h>

#include "calorie.h"
#include "transform.h"

static double threshold = CALORIE_DEFAULT_THRESHOLD;

static transform_string_t take(buf_t *b) {
    transform_string_t s = {(uint8_t *)b->p, b->len};
    b->p = NULL;
    b->len = b->cap = 0;
    return s;
}

bool exports_transform_init(transform_list_tuple2_string_string_t *params, transform_string_t *err) {
    double t = CALORIE_DEFAULT_THRESHOLD;
    buf_t msg = {0};
    bool ok = true;
    for (size_t i = 0; i < params->len && ok; i++) {
        transform_tuple2_string_string_t *p = &params->ptr[i];
        if (calorie_param(p->f0.ptr, p->f0.len, p->f1.ptr, p->f1.len, &t, &msg)) {
            *err = take(&msg);
            ok = false;
        }
    }
    if (ok) threshold = t;
    transform_list_tuple2_string_string_free(params);
    return ok;
}

bool exports_transform_process(transform_input_t *rec, transform_list_output_t *ret, transform_process_error_t *err) {
    buf_t out = {0}, msg = {0};
    int rc = calorie_check(rec->value.ptr, rec->value.len, threshold, &out, &msg);
    bool ok = true;
    ret->ptr = NULL;
    ret->len = 0;
    if (rc == CALORIE_ALERT) {
        transform_output_t *o = calloc(1, sizeof *o);
        if (!o) abort();
        o->key = rec->key; // moved: the input no longer owns it
        rec->key.is_some = false;
        transform_string_t v = take(&out);
        o->value.ptr = v.ptr;
        o->value.len = v.len;
        ret->ptr = o;
        ret->len = 1;
    } else if (rc == CALORIE_INVALID) {
        err->kind = SLUICE_PLUGIN_TYPES_ERROR_KIND_INVALID;
        err->message = take(&msg);
        ok = false;
    }
    buf_free(&out);
    buf_free(&msg);
    transform_input_free(rec);
    return ok;
}
