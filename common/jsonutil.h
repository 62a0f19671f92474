/* jsonutil: json-c helpers that never crash on the wrong type. */
#ifndef OP_JSONUTIL_H
#define OP_JSONUTIL_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

/* Parses exactly one JSON value; on failure returns NULL and err says what
 * and where ("invalid JSON at offset 12: unexpected character"). */
json_object *op_json_parse(const char *buf, size_t len, char *err, size_t errlen);
/* Lookups: a missing key or a value of another type gives def. */
const char *op_json_str(json_object *o, const char *key, const char *def);
int64_t op_json_int(json_object *o, const char *key, int64_t def);
uint64_t op_json_u64(json_object *o, const char *key, uint64_t def);
double op_json_double(json_object *o, const char *key, double def);
int op_json_bool(json_object *o, const char *key, int def);
json_object *op_json_obj(json_object *o, const char *key);  /* object or NULL */
json_object *op_json_arr(json_object *o, const char *key);  /* array or NULL */
/* Compact serialisation into a malloc'd string. */
char *op_json_dup_string(json_object *o);
/* Adds helpers that take ownership of nothing but the new value. */
void op_json_set_str(json_object *o, const char *key, const char *v);
void op_json_set_int(json_object *o, const char *key, int64_t v);

#endif
