/* htab: FNV-1a with a random seed, power-of-two buckets, doubled when the
 * load passes 2 per bucket. */
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "htab.h"
#include "util.h"

void htab_init(struct htab *t, htab_key_fn *key)
{
	t->mask = 63;
	t->count = 0;
	t->key = key;
	t->buckets = xcalloc(t->mask + 1, sizeof(*t->buckets));
	if (RAND_bytes((unsigned char *)&t->seed, sizeof(t->seed)) != 1)
		t->seed = (uint32_t)util_wall_us();
}

void htab_free(struct htab *t)
{
	free(t->buckets);
	t->buckets = NULL;
	t->count = 0;
}

uint32_t htab_hash(const struct htab *t, const char *key)
{
	uint32_t h = 2166136261u ^ t->seed;

	for (; *key; key++) {
		h ^= (unsigned char)*key;
		h *= 16777619u;
	}
	return h ^ (h >> 15);
}

struct htab_entry *htab_find(const struct htab *t, const char *key, uint32_t h)
{
	struct htab_entry *e = t->buckets[h & t->mask];

	for (; e; e = e->next)
		if (e->hash == h && strcmp(t->key(e), key) == 0)
			return e;
	return NULL;
}

static void grow(struct htab *t)
{
	size_t mask = t->mask * 2 + 1;
	struct htab_entry **b = xcalloc(mask + 1, sizeof(*b));

	for (size_t i = 0; i <= t->mask; i++) {
		struct htab_entry *e = t->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			e->next = b[e->hash & mask];
			b[e->hash & mask] = e;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->mask = mask;
}

void htab_insert(struct htab *t, struct htab_entry *e, uint32_t h)
{
	e->hash = h;
	e->next = t->buckets[h & t->mask];
	t->buckets[h & t->mask] = e;
	if (++t->count > 2 * (t->mask + 1))
		grow(t);
}

void htab_remove(struct htab *t, struct htab_entry *e)
{
	struct htab_entry **pp = &t->buckets[e->hash & t->mask];

	for (; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			t->count--;
			return;
		}
	}
}

struct htab_entry *htab_first(const struct htab *t, size_t *i)
{
	for (*i = 0; *i <= t->mask; (*i)++)
		if (t->buckets[*i])
			return t->buckets[*i];
	return NULL;
}

struct htab_entry *htab_next(const struct htab *t, struct htab_entry *e, size_t *i)
{
	if (e->next)
		return e->next;
	for ((*i)++; *i <= t->mask; (*i)++)
		if (t->buckets[*i])
			return t->buckets[*i];
	return NULL;
}
