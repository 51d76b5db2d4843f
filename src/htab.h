/* htab: one chained hash table keyed by strings, intrusive (the entry lives
 * in the object, so insertion allocates nothing but the growing bucket
 * array). Seeded per table against collision floods. Not thread-safe: the
 * owner's lock guards it. */
#ifndef SSEHUB_HTAB_H
#define SSEHUB_HTAB_H

#include <stddef.h>
#include <stdint.h>

struct htab_entry {
	struct htab_entry *next;
	uint32_t hash;
};

/* The key of an entry: a NUL-terminated string inside its object. */
typedef const char *htab_key_fn(const struct htab_entry *e);

struct htab {
	struct htab_entry **buckets;
	size_t mask, count;
	uint32_t seed;
	htab_key_fn *key;
};

/* Sets up an empty table (64 buckets). */
void htab_init(struct htab *t, htab_key_fn *key);
/* Releases the buckets; the entries are their owners' business. */
void htab_free(struct htab *t);

uint32_t htab_hash(const struct htab *t, const char *key);
/* The entry with key (h = htab_hash(t, key)), or NULL. */
struct htab_entry *htab_find(const struct htab *t, const char *key, uint32_t h);
/* Adds e, whose key hashes to h; the key must not be in t already. */
void htab_insert(struct htab *t, struct htab_entry *e, uint32_t h);
/* Removes e, which must be in t. */
void htab_remove(struct htab *t, struct htab_entry *e);

/* Iteration: for (e = htab_first(t, &i); e; e = htab_next(t, e, &i)).
 * Nothing may be inserted or removed meanwhile. */
struct htab_entry *htab_first(const struct htab *t, size_t *i);
struct htab_entry *htab_next(const struct htab *t, struct htab_entry *e, size_t *i);

#endif
