// calorie-alert's logic in C, without the component bindings (see calorie.c).
#ifndef CALORIE_H
#define CALORIE_H
#include <stddef.h>
#include <stdint.h>

#define CALORIE_DEFAULT_THRESHOLD 500.0

/// A growable byte buffer (malloc'd; free with buf_free).
typedef struct { char *p; size_t len, cap; } buf_t;
void buf_free(buf_t *b);

enum { CALORIE_ALERT = 0, CALORIE_QUIET = 1, CALORIE_INVALID = 2 };

/// Checks one recipe value: CALORIE_ALERT fills `out` with the alert's JSON,
/// CALORIE_QUIET means under the threshold, CALORIE_INVALID fills `msg`.
int calorie_check(const uint8_t *value, size_t len, double threshold, buf_t *out, buf_t *msg);

/// Applies one init parameter: 0, or -1 with `msg` naming the parameter.
int calorie_param(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen, double *threshold, buf_t *msg);
#endif
