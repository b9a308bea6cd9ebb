/*
 * config.c - typed getters over environment variables.
 *
 * Getters never fail: a bad value yields the default and is recorded in a
 * config_errors, so main can list every bad variable in one log line and
 * refuse to start rather than run with a half-understood configuration.
 * An empty variable counts as unset (container specs often set VAR="").
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iauth.h"
#include "log.h"

const char *config_str(const char *name, const char *def)
{
    const char *value = getenv(name);
    if (value == NULL || value[0] == '\0')
        return def;
    return value;
}

void config_error(config_errors *errs, const char *name, const char *reason)
{
    if (errs == NULL)
        return;
    size_t used = strnlen(errs->text, sizeof(errs->text));
    if (used >= sizeof(errs->text))
        used = sizeof(errs->text) - 1;
    snprintf(errs->text + used, sizeof(errs->text) - used, "%s%s: %s",
             errs->count > 0 ? "; " : "", name, reason);
    errs->count++;
}

static void record_error(config_errors *errs, const char *name, int64_t min,
                         int64_t max)
{
    char reason[96];
    snprintf(reason, sizeof(reason), "must be an integer in [%lld,%lld]",
             (long long)min, (long long)max);
    config_error(errs, name, reason);
}

const char *config_secret(const char *name, config_errors *errs)
{
    bool dev_mode = config_int("MESSENGER_DEV_MODE", 0, 0, 1, errs) == 1;
    const char *secret = config_str(name, "");
    const char *warning;
    const char *why = iauth_secret_problem(secret, dev_mode, &warning);
    if (why)
        config_error(errs, name, why);
    else if (warning)
        log_msg("warn", "%s: %s", name, warning);
    return secret;
}

/* Decimal integer with an optional sign and nothing else around it:
 * strtoll alone would accept leading blanks and a trailing unit. */
static int parse_int(const char *text, int64_t *out)
{
    const char *digits = text;
    if (*digits == '-' || *digits == '+')
        digits++;
    if (*digits < '0' || *digits > '9')
        return -1;

    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        return -1;
    *out = (int64_t)value;
    return 0;
}

int64_t config_int(const char *name, int64_t def, int64_t min, int64_t max,
                   config_errors *errs)
{
    const char *text = config_str(name, NULL);
    if (text == NULL)
        return def;

    int64_t value;
    if (parse_int(text, &value) != 0 || value < min || value > max) {
        record_error(errs, name, min, max);
        return def;
    }
    return value;
}

int config_report(const config_errors *errs)
{
    if (errs == NULL || errs->count == 0)
        return 0;
    json_t *fields =
        json_pack("{s:s, s:i}", "errors", errs->text, "count", errs->count);
    log_event("error", "invalid configuration", fields);
    json_decref(fields);
    return 1;
}
