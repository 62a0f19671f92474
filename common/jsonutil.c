#include "common/jsonutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_object *
op_json_parse(const char *buf, size_t len, char *err, size_t errlen)
{
	json_tokener *tok;
	json_object *o;
	enum json_tokener_error jerr;

	if (buf == NULL || len == 0) {
		snprintf(err, errlen, "empty body, expected JSON");
		return NULL;
	}
	if (len > (size_t)INT32_MAX) {
		snprintf(err, errlen, "body too large");
		return NULL;
	}
	tok = json_tokener_new();
	if (tok == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	o = json_tokener_parse_ex(tok, buf, (int)len);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue) {
		snprintf(err, errlen, "invalid JSON: truncated at offset %zu", len);
		json_object_put(o);
		o = NULL;
	} else if (jerr != json_tokener_success) {
		snprintf(err, errlen, "invalid JSON at offset %zu: %s",
		    json_tokener_get_parse_end(tok), json_tokener_error_desc(jerr));
		o = NULL;
	} else {
		size_t end = json_tokener_get_parse_end(tok);
		while (end < len && (buf[end] == ' ' || buf[end] == '\n' || buf[end] == '\r' ||
			buf[end] == '\t'))
			end++;
		if (end < len) {
			snprintf(err, errlen, "invalid JSON: trailing data at offset %zu", end);
			json_object_put(o);
			o = NULL;
		}
	}
	json_tokener_free(tok);
	return o;
}

const char *
op_json_str(json_object *o, const char *key, const char *def)
{
	json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return def;
}

int64_t
op_json_int(json_object *o, const char *key, int64_t def)
{
	json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) &&
	    (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
		return json_object_get_int64(v);
	return def;
}

uint64_t
op_json_u64(json_object *o, const char *key, uint64_t def)
{
	json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_int))
		return json_object_get_uint64(v);
	return def;
}

double
op_json_double(json_object *o, const char *key, double def)
{
	json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) &&
	    (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
		return json_object_get_double(v);
	return def;
}

int
op_json_bool(json_object *o, const char *key, int def)
{
	json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_boolean))
		return json_object_get_boolean(v);
	return def;
}

json_object *
op_json_obj(json_object *o, const char *key)
{
	json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_object))
		return v;
	return NULL;
}

json_object *
op_json_arr(json_object *o, const char *key)
{
	json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_array))
		return v;
	return NULL;
}

char *
op_json_dup_string(json_object *o)
{
	return strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE));
}

void
op_json_set_str(json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

void
op_json_set_int(json_object *o, const char *key, int64_t v)
{
	json_object_object_add(o, key, json_object_new_int64(v));
}
