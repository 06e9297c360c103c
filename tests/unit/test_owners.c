/*
 * test_owners.c - the consumer_owners map (daemon/net/owners.c): the
 * grammar and its refusals, and which identity may use which name.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "owners.h"

static const struct owner_id unix1001 = { .has_cred = true, .uid = 1001, .gid = 50 };
static const struct owner_id unix1002 = { .has_cred = true, .uid = 1002, .gid = 60 };
static const struct owner_id tls_fq = { .subject = "/O=NVIDIA/OU=x/CN=fault-quarantine", .cn = "fault-quarantine" };
static const struct owner_id tls_other = { .subject = "/O=NVIDIA/CN=fault-quarantine-evil",
					      .cn = "fault-quarantine-evil" };
static const struct owner_id tok = { .token = true };
static const struct owner_id root = { .has_cred = true };
static const struct owner_id nobody = { 0 };

static Owners *parse_ok(const char *spec)
{
	Owners *o = NULL;
	char err[200] = "";

	if (owners_parse(spec, &o, err, sizeof(err)) != 0)
		fail_msg("'%s' refused: %s", spec, err);
	return o;
}

static void test_empty_allows_all(void **state)
{
	(void)state;
	assert_null(parse_ok(""));
	assert_null(parse_ok("  ; ;"));
	assert_true(owners_allowed(NULL, "node-drainer", &nobody));
}

static void test_match(void **state)
{
	Owners *o = parse_ok("node-drainer = uid:1001; fault-* = uid:1002, cn:fault-quarantine; "
			     "labeler = gid:60, subject:/O=NVIDIA/CN=labeler; pusher = token; open = any");

	(void)state;
	assert_true(owners_allowed(o, "node-drainer", &unix1001));
	assert_false(owners_allowed(o, "node-drainer", &unix1002));
	assert_false(owners_allowed(o, "node-drainer", &tls_fq));
	assert_false(owners_allowed(o, "node-drainer", &nobody));
	assert_true(owners_allowed(o, "fault-quarantine", &unix1002));
	assert_true(owners_allowed(o, "fault-remediation", &tls_fq));
	assert_false(owners_allowed(o, "fault-quarantine", &tls_other));   /* CN is compared whole */
	/* A CN value holding "/CN=" reads in the one-line subject as a later
	 * CN; the CN compared is the entry's value (tls_peer_cn). */
	assert_false(owners_allowed(o, "fault-quarantine", &(struct owner_id){
		.subject = "/O=NVIDIA/CN=x/CN=fault-quarantine", .cn = "x/CN=fault-quarantine" }));
	assert_false(owners_allowed(o, "fault-quarantine",
				    &(struct owner_id){ .subject = "/O=NVIDIA/CN=fault-quarantine" }));   /* no CN read */
	assert_false(owners_allowed(o, "fault-quarantine", &unix1001));
	assert_true(owners_allowed(o, "labeler", &unix1002));               /* by gid */
	assert_true(owners_allowed(o, "labeler", &(struct owner_id){ .subject = "/O=NVIDIA/CN=labeler" }));
	assert_false(owners_allowed(o, "labeler", &(struct owner_id){ .subject = "/O=NVIDIA/CN=labeler/OU=x" }));
	assert_true(owners_allowed(o, "pusher", &tok));
	assert_false(owners_allowed(o, "pusher", &unix1001));
	assert_true(owners_allowed(o, "open", &nobody));
	/* No entry matches: refused, and a prefix is no name. */
	assert_false(owners_allowed(o, "node-drainer2", &unix1001));
	assert_false(owners_allowed(o, "fault", &unix1002));
	assert_false(owners_allowed(o, "", &unix1001));
	owners_free(o);
}

/* The first matching entry decides, even when a later one would allow. */
static void test_first_match(void **state)
{
	Owners *o = parse_ok("gpu-health = uid:1001; * = any");

	(void)state;
	assert_false(owners_allowed(o, "gpu-health", &unix1002));
	assert_true(owners_allowed(o, "gpu-health", &unix1001));
	assert_true(owners_allowed(o, "anything", &nobody));
	owners_free(o);
}

/* cn:{node}: a chained relay stores only under its own node name. */
static void test_cn_node(void **state)
{
	static const struct owner_id node_a = { .subject = "/O=fleet/CN=node-a", .cn = "node-a" };
	static const struct owner_id node_ab = { .subject = "/CN=node-ab", .cn = "node-ab" };
	Owners *o = parse_ok("ops/* = cn:ops; * = cn:{node}, uid:0");

	(void)state;
	assert_true(owners_allowed(o, "node-a/fault-quarantine", &node_a));
	assert_true(owners_allowed(o, "node-a/x/y", &node_a));
	assert_false(owners_allowed(o, "node-b/fault-quarantine", &node_a));
	assert_false(owners_allowed(o, "node-a/fault-quarantine", &node_ab));   /* no prefix match */
	assert_false(owners_allowed(o, "node-ab/x", &node_a));
	assert_false(owners_allowed(o, "/x", &node_a));                         /* an empty node part */
	assert_false(owners_allowed(o, "node-a", &node_a));                     /* no node part */
	assert_false(owners_allowed(o, "node-a/x", &(struct owner_id){ .subject = "/CN=node-b/CN=node-a",
								    .cn = "node-b/CN=node-a" }));
	assert_false(owners_allowed(o, "ops/x", &node_a));                      /* an earlier entry decides */
	assert_false(owners_allowed(o, "node-a/x", &unix1001));                 /* no certificate */
	assert_false(owners_allowed(o, "node-a/x", &tok));
	assert_true(owners_allowed(o, "local-consumer", &root));
	owners_free(o);
	/* Literal braces elsewhere stay a plain CN. */
	o = parse_ok("x = cn:{nodes}");
	assert_false(owners_allowed(o, "x", &node_a));
	owners_free(o);
}

static void test_refused(void **state)
{
	static const char *const bad[] = {
		"node-drainer",                 /* no '=' */
		"= uid:1",                      /* no pattern */
		"a = ",                         /* no identity */
		"a = uid:1,",                   /* an empty one */
		"a = uid:x",
		"a = uid:-1",
		"a = uid:99999999999",
		"a = user:root",
		"a = cn:",
		"a*b = any",                    /* '*' only at the end */
		"a = any; b",
	};
	char err[200];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		Owners *o = (Owners *)1;
		err[0] = '\0';
		if (owners_parse(bad[i], &o, err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_null(o);
		assert_true(err[0] != '\0');
	}
}

static void test_id_text(void **state)
{
	char buf[96];

	(void)state;
	assert_string_equal(owners_id_text(&unix1001, buf, sizeof(buf)), "uid=1001 gid=50");
	assert_string_equal(owners_id_text(&tls_fq, buf, sizeof(buf)), "subject=/O=NVIDIA/OU=x/CN=fault-quarantine");
	assert_string_equal(owners_id_text(&(struct owner_id){ .cn = "x" }, buf, sizeof(buf)), "cn=x");
	assert_string_equal(owners_id_text(&tok, buf, sizeof(buf)), "token");
	assert_string_equal(owners_id_text(&nobody, buf, sizeof(buf)), "none");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_allows_all),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_first_match),
		cmocka_unit_test(test_cn_node),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_id_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
