/*
 * config.h - configuration from environment variables.
 *
 * Each getter returns the variable's value or the documented default, and
 * records an error in *cfg_err when the value does not parse or is out of
 * range, so main can report every bad variable at once and refuse to
 * start. The README lists every variable with its default.
 */
#ifndef MSG_CONFIG_H
#define MSG_CONFIG_H

#include <stdint.h>

typedef struct config_errors {
    int count;
    char text[1024]; /* "NAME: reason; NAME: reason" */
} config_errors;

const char *config_str(const char *name, const char *def);
int64_t config_int(const char *name, int64_t def, int64_t min, int64_t max,
                   config_errors *errs);
/* Records "NAME: reason" in errs (NULL errs: ignored). */
void config_error(config_errors *errs, const char *name, const char *reason);
/* An HMAC secret (MESSENGER_JWT_SECRET, MESSENGER_INTERNAL_SECRET): an
 * error when empty or shorter than 32 bytes, only a logged warning when
 * short and MESSENGER_DEV_MODE=1. The string is the environment's. */
const char *config_secret(const char *name, config_errors *errs);
/* Logs the errors and returns 1 if there are any. */
int config_report(const config_errors *errs);

#endif
