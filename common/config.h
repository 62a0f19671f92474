/* config: INI files read with inih into a flat (section, key) -> value store. */
#ifndef OP_CONFIG_H
#define OP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct op_config;

/* Returns NULL and fills err ("FILE:LINE: what") on a missing file or syntax error. */
struct op_config *op_config_load(const char *path, char *err, size_t errlen);
struct op_config *op_config_parse(const char *text, char *err, size_t errlen);
void op_config_free(struct op_config *cfg);
const char *op_config_path(const struct op_config *cfg);

const char *op_config_get(const struct op_config *cfg, const char *section, const char *key);
/* Typed getters: return 0 and the default when the key is absent, 0 and the
 * parsed value when valid, -1 with err set ("[section] key: ...") when not. */
int op_config_duration(const struct op_config *cfg, const char *section, const char *key,
    int64_t def_ms, int64_t *out, char *err, size_t errlen);
int op_config_int(const struct op_config *cfg, const char *section, const char *key,
    int64_t def, int64_t min, int64_t max, int64_t *out, char *err, size_t errlen);
int op_config_bool(const struct op_config *cfg, const char *section, const char *key,
    int def, int *out, char *err, size_t errlen);
/* Whether a section appears in the file at all. */
int op_config_has_section(const struct op_config *cfg, const char *section);
/* Calls fn for every (key, value) of a section, in file order. */
void op_config_foreach(const struct op_config *cfg, const char *section,
    void (*fn)(const char *key, const char *value, void *arg), void *arg);
/* Names of the sections whose names are not in the known list (for --check-config). */
size_t op_config_section_count(const struct op_config *cfg);
const char *op_config_section_name(const struct op_config *cfg, size_t i);

#endif
