/* rlnode_map: a small chained hash map from strings to owned values. */
#include "rlnode.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define RLN_MAP_INIT_BUCKETS 64
#define RLN_MAP_MAX_LOAD 2 /* entries per bucket before growing */

static uint64_t
rln_map_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a: short keys, no adversary that matters here */

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ULL;
	}
	return h;
}

void
rln_map_init(struct rln_map *m)
{
	m->nb = RLN_MAP_INIT_BUCKETS;
	m->n = 0;
	m->b = calloc(m->nb, sizeof(*m->b));
	if (m->b == NULL)
		fatal("out of memory");
}

static void
rln_map_grow(struct rln_map *m)
{
	size_t nb = m->nb * 2, i;
	struct rln_ent **b = calloc(nb, sizeof(*b));

	if (b == NULL)
		return; /* keep working with longer chains */
	for (i = 0; i < m->nb; i++) {
		struct rln_ent *e = m->b[i], *next;
		for (; e != NULL; e = next) {
			size_t j = rln_map_hash(e->key) & (nb - 1);
			next = e->next;
			e->next = b[j];
			b[j] = e;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
}

void *
rln_map_get(const struct rln_map *m, const char *key)
{
	struct rln_ent *e = m->b[rln_map_hash(key) & (m->nb - 1)];

	for (; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->val;
	return NULL;
}

void *
rln_map_get_or_add(struct rln_map *m, const char *key, void *(*mk)(void))
{
	void *v = rln_map_get(m, key);
	struct rln_ent *e;
	size_t i;

	if (v != NULL)
		return v;
	if (m->n >= m->nb * RLN_MAP_MAX_LOAD)
		rln_map_grow(m);
	e = calloc(1, sizeof(*e));
	if (e == NULL || (e->key = strdup(key)) == NULL || (e->val = mk()) == NULL)
		fatal("out of memory");
	i = rln_map_hash(key) & (m->nb - 1);
	e->next = m->b[i];
	m->b[i] = e;
	m->n++;
	return e->val;
}

void *
rln_map_del(struct rln_map *m, const char *key)
{
	struct rln_ent **pp = &m->b[rln_map_hash(key) & (m->nb - 1)], *e;
	void *v;

	for (; (e = *pp) != NULL; pp = &e->next) {
		if (strcmp(e->key, key) == 0) {
			*pp = e->next;
			v = e->val;
			free(e->key);
			free(e);
			m->n--;
			return v;
		}
	}
	return NULL;
}

void
rln_map_each(struct rln_map *m, int (*fn)(const char *, void *, void *), void *arg,
    void (*freeval)(void *))
{
	size_t i;

	for (i = 0; i < m->nb; i++) {
		struct rln_ent **pp = &m->b[i], *e;
		while ((e = *pp) != NULL) {
			if (fn(e->key, e->val, arg)) {
				*pp = e->next;
				if (freeval)
					freeval(e->val);
				free(e->key);
				free(e);
				m->n--;
			} else {
				pp = &e->next;
			}
		}
	}
}

static int
rln_map_all(const char *k, void *v, void *arg)
{
	return 1;
}

void
rln_map_clear(struct rln_map *m, void (*freeval)(void *))
{
	if (m->b == NULL)
		return;
	rln_map_each(m, rln_map_all, NULL, freeval);
	free(m->b);
	m->b = NULL;
	m->nb = 0;
}
