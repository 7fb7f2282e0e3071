/*
 * sim/model.c — what the clients were told: every user, every
 * acknowledged post, comment and story, and every follow and like as a
 * flag (the last acknowledged value, and whether a later op ended with
 * an unknown outcome: a timeout, a crash, a storage error).
 *
 * The checks compare the system against this model: an acknowledged
 * write must be there; a flag that is certain must read as its value;
 * an uncertain one may read either way. Writes whose outcome is unknown
 * are not in the model as objects (their ids were never seen) and show
 * up only as counts the checks allow for.
 *
 * Invariants: arrays only grow during a run and are walked by index
 * (deterministic); the maps serve lookups only, never iteration.
 */
#include "sim/internal.h"

/* First map size; grows by doubling at half load. */
#define MAP_INITIAL 256u

/* ---- small containers ---------------------------------------------------- */

static uint32_t
slot_of(const sim_map *m, uint64_t key)
{
	return (uint32_t)sim__mix(key) & (m->capacity - 1);
}

bool
sim__map_get(const sim_map *m, uint64_t key, uint32_t *value_out)
{
	if (m->capacity == 0)
		return false;
	for (uint32_t i = slot_of(m, key);; i = (i + 1) & (m->capacity - 1)) {
		if (!m->used[i])
			return false;
		if (m->keys[i] == key) {
			*value_out = m->values[i];
			return true;
		}
	}
}

static void
map_grow(sim_map *m)
{
	sim_map bigger = {0};
	bigger.capacity = m->capacity ? m->capacity * 2 : MAP_INITIAL;
	bigger.keys = calloc(bigger.capacity, sizeof *bigger.keys);
	bigger.values = calloc(bigger.capacity, sizeof *bigger.values);
	bigger.used = calloc(bigger.capacity, 1);
	SIM_ASSERT(bigger.keys != NULL && bigger.values != NULL &&
		bigger.used != NULL);
	for (uint32_t i = 0; i < m->capacity; i++)
		if (m->used[i])
			sim__map_put(&bigger, m->keys[i], m->values[i]);
	sim__map_free(m);
	*m = bigger;
}

void
sim__map_put(sim_map *m, uint64_t key, uint32_t value)
{
	if ((m->count + 1) * 2 > m->capacity)
		map_grow(m);
	uint32_t i = slot_of(m, key);
	while (m->used[i] && m->keys[i] != key)
		i = (i + 1) & (m->capacity - 1);
	if (!m->used[i]) {
		m->used[i] = 1;
		m->keys[i] = key;
		m->count++;
	}
	m->values[i] = value;
}

void
sim__map_free(sim_map *m)
{
	free(m->keys);
	free(m->values);
	free(m->used);
	memset(m, 0, sizeof *m);
}

void
sim__u32s_push(sim_u32s *a, uint32_t v)
{
	if (a->count == a->capacity) {
		uint32_t capacity = a->capacity ? a->capacity * 2 : 4;
		uint32_t *items = realloc(a->items, capacity * sizeof *items);
		SIM_ASSERT(items != NULL);
		a->items = items;
		a->capacity = capacity;
	}
	a->items[a->count++] = v;
}

bool
sim__u32s_has(const sim_u32s *a, uint32_t v)
{
	for (uint32_t i = 0; i < a->count; i++)
		if (a->items[i] == v)
			return true;
	return false;
}

void
sim__u32s_free(sim_u32s *a)
{
	free(a->items);
	memset(a, 0, sizeof *a);
}

/* ---- the model -------------------------------------------------------------- */

int
sim__model_create(sim_world *w, sim_model **out)
{
	sim_model *m = calloc(1, sizeof *m);
	if (m == NULL)
		return -1;
	m->users_count = w->knobs.users;
	m->users = calloc(m->users_count, sizeof *m->users);
	if (m->users == NULL) {
		free(m);
		return -1;
	}
	for (uint32_t i = 0; i < m->users_count; i++)
		snprintf(m->users[i].name, sizeof m->users[i].name, "user%u", i);
	*out = m;
	return 0;
}

void
sim__model_destroy(sim_model *m)
{
	if (m == NULL)
		return;
	for (uint32_t i = 0; i < m->users_count; i++) {
		sim__u32s_free(&m->users[i].followees);
		sim__u32s_free(&m->users[i].posts);
		sim__u32s_free(&m->users[i].stories);
	}
	free(m->users);
	for (uint32_t i = 0; i < m->posts_count; i++) {
		sim__u32s_free(&m->posts[i].likers);
		free(m->posts[i].comments);
	}
	free(m->posts);
	free(m->flags);
	free(m->stories);
	sim__map_free(&m->post_by_id);
	sim__map_free(&m->follows);
	sim__map_free(&m->likes);
	free(m);
}

sim_flag *
sim__model_flag_find(sim_model *m, const sim_map *map, uint64_t key)
{
	uint32_t index;
	if (!sim__map_get(map, key, &index))
		return NULL;
	return &m->flags[index];
}

sim_flag *
sim__model_flag(sim_model *m, sim_map *map, uint64_t key)
{
	sim_flag *f = sim__model_flag_find(m, map, key);
	if (f != NULL)
		return f;
	if (m->flags_count == m->flags_capacity) {
		uint32_t capacity = m->flags_capacity ? m->flags_capacity * 2 : 256;
		sim_flag *flags = realloc(m->flags, capacity * sizeof *flags);
		SIM_ASSERT(flags != NULL);
		m->flags = flags;
		m->flags_capacity = capacity;
	}
	f = &m->flags[m->flags_count];
	memset(f, 0, sizeof *f);
	sim__map_put(map, key, m->flags_count++);
	return f;
}

uint32_t
sim__model_post_add(sim_model *m, uint64_t id, uint32_t author,
	uint64_t issued_ms, uint64_t acked_ms)
{
	SIM_ASSERT(sim__model_post_find(m, id) < 0);
	if (m->posts_count == m->posts_capacity) {
		uint32_t capacity = m->posts_capacity ? m->posts_capacity * 2 : 256;
		sim_post *posts = realloc(m->posts, capacity * sizeof *posts);
		SIM_ASSERT(posts != NULL);
		m->posts = posts;
		m->posts_capacity = capacity;
	}
	uint32_t index = m->posts_count++;
	sim_post *p = &m->posts[index];
	memset(p, 0, sizeof *p);
	p->id = id;
	p->author = author;
	p->state = SIM_POST_LIVE;
	p->issued_ms = issued_ms;
	p->acked_ms = acked_ms;
	sim__map_put(&m->post_by_id, id, index);
	sim__u32s_push(&m->users[author].posts, index);
	m->recent[m->recent_next] = index;
	m->recent_next = (m->recent_next + 1) % 256u;
	if (m->recent_count < 256u)
		m->recent_count++;
	return index;
}

int64_t
sim__model_post_find(const sim_model *m, uint64_t id)
{
	uint32_t index;
	return sim__map_get(&m->post_by_id, id, &index) ? (int64_t)index : -1;
}

void
sim__model_comment_add(sim_post *p, uint64_t id, uint32_t author)
{
	if (p->comments_count == p->comments_capacity) {
		uint32_t capacity = p->comments_capacity ? p->comments_capacity * 2
							 : 4;
		sim_comment *c = realloc(p->comments, capacity * sizeof *c);
		SIM_ASSERT(c != NULL);
		p->comments = c;
		p->comments_capacity = capacity;
	}
	p->comments[p->comments_count++] = (sim_comment){id, author,
		SIM_POST_LIVE};
}

sim_comment *
sim__model_comment_find(sim_post *p, uint64_t id)
{
	for (uint32_t i = 0; i < p->comments_count; i++)
		if (p->comments[i].id == id)
			return &p->comments[i];
	return NULL;
}

uint32_t
sim__model_story_add(sim_model *m, uint64_t id, uint32_t author,
	uint64_t expires_at_ms, uint64_t acked_ms)
{
	if (m->stories_count == m->stories_capacity) {
		uint32_t capacity = m->stories_capacity ? m->stories_capacity * 2
							: 64;
		sim_story *s = realloc(m->stories, capacity * sizeof *s);
		SIM_ASSERT(s != NULL);
		m->stories = s;
		m->stories_capacity = capacity;
	}
	uint32_t index = m->stories_count++;
	m->stories[index] = (sim_story){id, author, expires_at_ms, acked_ms};
	sim__u32s_push(&m->users[author].stories, index);
	return index;
}
