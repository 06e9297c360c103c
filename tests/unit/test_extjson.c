/*
 * test_extjson.c - unit tests of the mongoexport converter (cli/extjson.c):
 * every Extended JSON type wrapper in its v1, v2 canonical and v2 relaxed
 * forms, exact number text, dates with offsets and before 1970, refusals
 * with the path of the bad value, the row built from health and
 * maintenance documents as Mongo stores them (ids, columns, keys kept), and
 * the scanner on JSON lines, --pretty blocks, --jsonArray, broken lines,
 * oversized documents and input fed in any chunking.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extjson.h"

/* Converts `in` and compares the compact result with `want`. */
static void conv_ok(const char *in, const char *want)
{
	char err[256] = "";
	char *got = extjson_to_json(in, strlen(in), err, sizeof(err));

	if (!got)
		fail_msg("%s: %s", in, err);
	assert_string_equal(got, want);
	free(got);
}

/* Conversion fails with a message containing `want`. */
static void conv_err(const char *in, const char *want)
{
	char err[256] = "";
	char *got = extjson_to_json(in, strlen(in), err, sizeof(err));

	if (got)
		fail_msg("%s: accepted as %s", in, got);
	if (!strstr(err, want))
		fail_msg("%s: error \"%s\" lacks \"%s\"", in, err, want);
}

static void test_relaxed_v2(void **state)
{
	(void)state;
	conv_ok("{\"_id\":{\"$oid\":\"65A1B2C3D4E5F60718293A4B\"},\"createdAt\":{\"$date\":\"2024-01-15T10:30:00.123Z\"},"
		"\"n\":1,\"neg\":-7,\"big\":9223372036854775807,\"f\":1.50,\"e\":1E+3,\"z\":-0.0}",
		"{\"_id\":\"65a1b2c3d4e5f60718293a4b\",\"createdAt\":\"2024-01-15T10:30:00.123Z\","
		"\"n\":1,\"neg\":-7,\"big\":9223372036854775807,\"f\":1.50,\"e\":1E+3,\"z\":-0.0}");
	/* Beyond 2^53 a double would round: the digits are kept as written. */
	conv_ok("[12345678901234567890123, 0.1000000000000000055511151231257827]",
		"[12345678901234567890123,0.1000000000000000055511151231257827]");
	conv_ok("{\"ok\":true,\"no\":false,\"nil\":null,\"s\":\"x\\\"y\\\\z\\n\\u00e9\",\"a\":[]}",
		"{\"ok\":true,\"no\":false,\"nil\":null,\"s\":\"x\\\"y\\\\z\\n\xc3\xa9\",\"a\":[]}");
}

static void test_canonical_v2(void **state)
{
	(void)state;
	conv_ok("{\"seconds\":{\"$numberLong\":\"1705314600\"},\"nanos\":{\"$numberInt\":\"123000000\"}}",
		"{\"seconds\":1705314600,\"nanos\":123000000}");
	conv_ok("{\"$numberLong\":\"-9223372036854775808\"}", "-9223372036854775808");
	conv_ok("{\"$numberInt\":\"-2147483648\"}", "-2147483648");
	conv_ok("{\"d\":{\"$date\":{\"$numberLong\":\"1705314600000\"}}}", "{\"d\":\"2024-01-15T10:30:00Z\"}");
	conv_ok("[{\"$numberDouble\":\"1.0\"},{\"$numberDouble\":\"-1.2345E+40\"},{\"$numberDouble\":\"5e-324\"}]",
		"[1.0,-1.2345E+40,5e-324]");
	conv_ok("[{\"$numberDouble\":\"NaN\"},{\"$numberDouble\":\"Infinity\"},{\"$numberDouble\":\"-Infinity\"}]",
		"[\"NaN\",\"Infinity\",\"-Infinity\"]");
	/* Not JSON's grammar but a double all the same. */
	conv_ok("[{\"$numberDouble\":\"1.\"},{\"$numberDouble\":\".5\"},{\"$numberDouble\":\"+2\"}]", "[1,0.5,2]");
	conv_ok("[{\"$numberDecimal\":\"1234.5678901234567890123456789\"},{\"$numberDecimal\":\"1E+3\"},"
		"{\"$numberDecimal\":\"-0\"},{\"$numberDecimal\":\"NaN\"}]",
		"[1234.5678901234567890123456789,1E+3,-0,\"NaN\"]");
	conv_ok("{\"b\":{\"$binary\":{\"base64\":\"AAECAwQ=\",\"subType\":\"00\"}}}", "{\"b\":\"AAECAwQ=\"}");
	conv_ok("{\"u\":{\"$binary\":{\"base64\":\"c//SZESzTGmQ6OfR38A11A==\",\"subType\":\"04\"}}}",
		"{\"u\":\"73ffd264-44b3-4c69-90e8-e7d1dfc035d4\"}");
	conv_ok("{\"u\":{\"$uuid\":\"73FFD264-44B3-4C69-90E8-E7D1DFC035D4\"}}",
		"{\"u\":\"73ffd264-44b3-4c69-90e8-e7d1dfc035d4\"}");
	conv_ok("{\"x\":{\"$undefined\":true}}", "{\"x\":null}");
}

static void test_legacy_v1(void **state)
{
	(void)state;
	conv_ok("{\"d\":{\"$date\":1705314600000}}", "{\"d\":\"2024-01-15T10:30:00Z\"}");
	conv_ok("{\"d\":{\"$date\":-1}}", "{\"d\":\"1969-12-31T23:59:59.999Z\"}");
	conv_ok("{\"d\":{\"$date\":\"2024-01-15T10:30:00.000+0000\"}}", "{\"d\":\"2024-01-15T10:30:00Z\"}");
	conv_ok("{\"b\":{\"$type\":\"00\",\"$binary\":\"AAECAw==\"}}", "{\"b\":\"AAECAw==\"}");
	conv_ok("{\"b\":{\"$binary\":\"c//SZESzTGmQ6OfR38A11A==\",\"$type\":\"03\"}}",
		"{\"b\":\"73ffd264-44b3-4c69-90e8-e7d1dfc035d4\"}");
	conv_ok("{\"b\":{\"$binary\":\"\",\"$type\":\"0\"}}", "{\"b\":\"\"}");
	/* A relaxed exporter may leave $numberLong's digits unquoted. */
	conv_ok("{\"n\":{\"$numberLong\":42}}", "{\"n\":42}");
}

static void test_dates(void **state)
{
	(void)state;
	conv_ok("[{\"$date\":\"2024-01-15T11:30:00.5+01:00\"},{\"$date\":\"2024-01-15T05:00:00-05:30\"},"
		"{\"$date\":\"2024-02-29T23:59:59.999999999Z\"},{\"$date\":\"0001-01-01T00:00:00Z\"},"
		"{\"$date\":\"9999-12-31T23:59:59.1z\"},{\"$date\":\"2000-03-01t00:00:00.120Z\"}]",
		"[\"2024-01-15T10:30:00.5Z\",\"2024-01-15T10:30:00Z\",\"2024-02-29T23:59:59.999999999Z\","
		"\"0001-01-01T00:00:00Z\",\"9999-12-31T23:59:59.1Z\",\"2000-03-01T00:00:00.12Z\"]");
	conv_ok("{\"$date\":{\"$numberLong\":\"-62135596800000\"}}", "\"0001-01-01T00:00:00Z\"");
	conv_ok("{\"$date\":253402300799999}", "\"9999-12-31T23:59:59.999Z\"");
	conv_err("{\"$date\":\"2023-02-29T00:00:00Z\"}", "$date: \"2023-02-29");
	conv_err("{\"$date\":\"2024-01-15 10:30\"}", "not an ISO-8601 date");
	conv_err("{\"$date\":\"2024-01-15T10:30:00\"}", "not an ISO-8601 date");
	conv_err("{\"$date\":\"2024-01-15T24:00:00Z\"}", "not an ISO-8601 date");
	conv_err("{\"$date\":253402300800000}", "outside years 1 to 9999");
	conv_err("{\"$date\":1.5}", "$date: expected");
	conv_err("{\"$date\":true}", "$date: expected");
}

static void test_refusals(void **state)
{
	(void)state;
	conv_err("{\"a\":{\"b\":[1,{\"$date\":\"soon\"}]}}", "a.b[1]: $date: \"soon\"");
	conv_err("{\"a\":{\"$numberLong\":\"12x\"}}", "a: $numberLong: expected a decimal 64-bit integer");
	conv_err("{\"a\":{\"$numberLong\":\"9223372036854775808\"}}", "64-bit");
	conv_err("{\"a\":{\"$numberInt\":\"3000000000\"}}", "32-bit");
	conv_err("{\"a\":{\"$numberInt\":\"+1\"}}", "32-bit");
	conv_err("{\"a\":{\"$oid\":\"xyz\"}}", "$oid: expected 24 hex digits");
	conv_err("{\"a\":{\"$oid\":\"65a1b2c3d4e5f60718293a4b\",\"x\":1}}", "malformed Extended JSON: $oid");
	conv_err("{\"a\":{\"$binary\":\"!!!!\",\"$type\":\"00\"}}", "not valid base64");
	conv_err("{\"a\":{\"$binary\":\"AAE=\",\"$type\":\"zz\"}}", "one-byte hex subType");
	conv_err("{\"a\":{\"$binary\":{\"base64\":\"AA==\"}}}", "$binary: expected");
	conv_err("{\"a\":{\"$uuid\":\"not-a-uuid\"}}", "$uuid");
	conv_err("{\"t\":{\"$timestamp\":{\"t\":1,\"i\":2}}}", "$timestamp is not supported");
	conv_err("{\"r\":{\"$regularExpression\":{\"pattern\":\"a\",\"options\":\"\"}}}", "not supported");
	conv_err("{\"a\":{\"$numberDouble\":\"one\"}}", "$numberDouble: \"one\" is not a number");
	conv_err("{\"a\":{\"$numberDecimal\":\"1.\"}}", "is not a number");
	conv_err("{\"a\":{\"$numberDecimal\":\"1.5E+31705314599\"}}", "$numberDecimal: \"1.5E+31705314599\" is beyond");
	conv_err("{\"a\":\"x\\u0000y\"}", "\\u0000");
	conv_err("{\"a\":\"\xff\"}", "invalid UTF-8 at byte 7");
	conv_err("{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8");
	conv_ok("{\"a\":1e2000}", "{\"a\":1e2000}");
	conv_err("{\"a\":1e20000}", "beyond what PostgreSQL stores");
	conv_err("{\"a\":-1.5E-99999999999999999999999}", "beyond what PostgreSQL stores");
	conv_err("{\"a\":01}", "invalid number \"01\"");
	conv_err("{\"a\":1.}", "invalid");
	conv_err("{\"a\":1", "invalid JSON");
	conv_err("{\"a\":1} x", "text after the document");
	conv_err("{\"a\":nope}", "invalid JSON at byte 6 near \"nope}\"");
	{
		/* A path longer than the message holds ends in "...". */
		char deep[2048], *q = deep;
		int i;

		for (i = 0; i < 12; i++)
			q += sprintf(q, "{\"key-%02d-abcdefghijklmnopqrstuvwxyz\":[", i);
		q += sprintf(q, "{\"$date\":\"never\"}");
		for (i = 0; i < 12; i++)
			q += sprintf(q, "]}");
		conv_err(deep, "key-00-abcdefghijklmnopqrstuvwxyz[0].key-01-");
		conv_err(deep, "...: $date: \"never\"");
	}
	/* Keys starting with '$' that are not type wrappers are data. */
	conv_ok("{\"$set\":{\"$x\":1}}", "{\"$set\":{\"$x\":1}}");
}

/* A health event as NVSentinel's Mongo store writes it (bson names in
 * lowercase), exported with --jsonFormat=canonical. */
static const char mongo_health[] =
	"{\"_id\":{\"$oid\":\"65a1b2c3d4e5f60718293a4b\"},"
	"\"createdAt\":{\"$date\":{\"$numberLong\":\"1705314600123\"}},"
	"\"healthevent\":{\"version\":{\"$numberInt\":\"1\"},\"agent\":\"gpu-health-monitor\","
	"\"componentclass\":\"GPU\",\"checkname\":\"GpuXidError\",\"isfatal\":true,\"ishealthy\":false,"
	"\"message\":\"Xid 79\",\"recommendedaction\":{\"$numberInt\":\"24\"},\"errorcode\":[\"79\"],"
	"\"entitiesimpacted\":[{\"entitytype\":\"GPU\",\"entityvalue\":\"0\"}],"
	"\"generatedtimestamp\":{\"seconds\":{\"$numberLong\":\"1705314599\"},\"nanos\":{\"$numberInt\":\"5000\"}},"
	"\"nodename\":\"gpu-node-07\",\"processingstrategy\":{\"$numberInt\":\"1\"}},"
	"\"healtheventstatus\":{\"nodequarantined\":\"Quarantined\","
	"\"quarantinefinishtimestamp\":{\"seconds\":{\"$numberLong\":\"1705314601\"},\"nanos\":{\"$numberInt\":\"0\"}},"
	"\"userpodsevictionstatus\":{\"status\":\"Succeeded\",\"message\":\"drained\"},"
	"\"faultremediated\":true,\"lastremediationtimestamp\":{\"$date\":{\"$numberLong\":\"1705318200000\"}}}}";

static void test_health_row(void **state)
{
	const char *const *cols = extjson_columns(EXTJSON_HEALTH_EVENTS);
	struct extjson_row row;
	char err[256] = "";
	unsigned i;
	static const char *const want[] = {
		"65a1b2c3-d4e5-8000-8000-f60718293a4b", "gpu-node-07", "GpuXidError", "GPU", "RESTART_BM",
		"Quarantined", "Succeeded", "drained", "t", "2024-01-15T11:30:00Z", "2024-01-15T10:30:01Z", NULL,
		NULL, "2024-01-15T10:30:00.123Z", "2024-01-15T10:30:00.123Z",
	};

	(void)state;
	assert_int_equal(extjson_convert(EXTJSON_HEALTH_EVENTS, mongo_health, strlen(mongo_health), &row, err,
					 sizeof(err)), 0);
	assert_int_equal(row.ncols, 15);
	assert_false(row.kept_id);
	for (i = 0; i < row.ncols; i++) {
		assert_non_null(cols[i]);
		if (strcmp(cols[i], "document") == 0)
			continue;
		if (!want[i])
			assert_null(row.val[i]);
		else if (!row.val[i] || strcmp(row.val[i], want[i]) != 0)
			fail_msg("%s: got %s, want %s", cols[i], row.val[i] ? row.val[i] : "NULL", want[i]);
	}
	assert_null(cols[i]);
	/* The document keeps Mongo's keys, loses the _id it became the id of,
	 * and its values are plain JSON. */
	assert_string_equal(row.val[12],
		"{\"createdAt\":\"2024-01-15T10:30:00.123Z\",\"healthevent\":{\"version\":1,\"agent\":\"gpu-health-monitor\","
		"\"componentclass\":\"GPU\",\"checkname\":\"GpuXidError\",\"isfatal\":true,\"ishealthy\":false,"
		"\"message\":\"Xid 79\",\"recommendedaction\":24,\"errorcode\":[\"79\"],"
		"\"entitiesimpacted\":[{\"entitytype\":\"GPU\",\"entityvalue\":\"0\"}],"
		"\"generatedtimestamp\":{\"seconds\":1705314599,\"nanos\":5000},\"nodename\":\"gpu-node-07\","
		"\"processingstrategy\":1},\"healtheventstatus\":{\"nodequarantined\":\"Quarantined\","
		"\"quarantinefinishtimestamp\":{\"seconds\":1705314601,\"nanos\":0},"
		"\"userpodsevictionstatus\":{\"status\":\"Succeeded\",\"message\":\"drained\"},"
		"\"faultremediated\":true,\"lastremediationtimestamp\":\"2024-01-15T11:30:00Z\"}}");
	extjson_row_clear(&row);
}

/* What a fresh insert by NVSentinel's PostgreSQL writer holds: camelCase,
 * the status still empty, faultremediated wrapped. */
static void test_health_row_fresh(void **state)
{
	static const char doc[] =
		"{\"_id\":\"0b5e3c1a-9f7d-4e2b-8a61-2d4c5b6a7e80\",\"createdAt\":\"2026-11-25T10:00:00.5+02:00\","
		"\"healthevent\":{\"nodeName\":\"n1\",\"recommendedAction\":42},"
		"\"healtheventstatus\":{\"nodequarantined\":null,\"userpodsevictionstatus\":{\"status\":\"\"},"
		"\"faultremediated\":{\"value\":false}}}";
	struct extjson_row row;
	char err[256] = "";

	(void)state;
	assert_int_equal(extjson_convert(EXTJSON_HEALTH_EVENTS, doc, strlen(doc), &row, err, sizeof(err)), 0);
	assert_string_equal(row.val[0], "0b5e3c1a-9f7d-4e2b-8a61-2d4c5b6a7e80");
	assert_string_equal(row.val[1], "n1");
	assert_string_equal(row.val[2], "");
	assert_string_equal(row.val[3], "");
	assert_string_equal(row.val[4], "42");
	assert_null(row.val[5]);
	assert_null(row.val[6]);
	assert_string_equal(row.val[7], "");
	assert_string_equal(row.val[8], "f");
	assert_string_equal(row.val[13], "2026-11-25T08:00:00.5Z");
	assert_string_equal(row.val[12],
		"{\"createdAt\":\"2026-11-25T10:00:00.5+02:00\",\"healthevent\":{\"nodeName\":\"n1\","
		"\"recommendedAction\":42},\"healtheventstatus\":{\"nodequarantined\":null,"
		"\"userpodsevictionstatus\":{\"status\":\"\"},\"faultremediated\":{\"value\":false}}}");
	extjson_row_clear(&row);
}

static char *row_id(enum extjson_table t, const char *doc, bool *kept, char **document)
{
	struct extjson_row row;
	char err[256] = "", *id;

	if (extjson_convert(t, doc, strlen(doc), &row, err, sizeof(err)) != 0)
		fail_msg("%s: %s", doc, err);
	id = strdup(row.val[0]);
	*kept = row.kept_id;
	*document = strdup(row.val[t == EXTJSON_HEALTH_EVENTS ? 12 : 11]);
	extjson_row_clear(&row);
	return id;
}

static void test_ids(void **state)
{
	bool kept;
	char *a, *b, *doc;

	(void)state;
#define HE "\"healthevent\":{\"nodename\":\"n\"}"
	a = row_id(EXTJSON_HEALTH_EVENTS, "{\"_id\":{\"$uuid\":\"73ffd264-44b3-4c69-90e8-e7d1dfc035d4\"}," HE "}",
		   &kept, &doc);
	assert_string_equal(a, "73ffd264-44b3-4c69-90e8-e7d1dfc035d4");
	assert_false(kept);
	assert_string_equal(doc, "{" HE "}");
	free(a);
	free(doc);
	a = row_id(EXTJSON_HEALTH_EVENTS,
		   "{\"_id\":{\"$binary\":{\"base64\":\"c//SZESzTGmQ6OfR38A11A==\",\"subType\":\"04\"}}," HE "}", &kept, &doc);
	assert_string_equal(a, "73ffd264-44b3-4c69-90e8-e7d1dfc035d4");
	free(a);
	free(doc);
	/* Anything else: a version 5 UUID of the value, the same every time,
	 * and the _id stays in the document so nothing is lost. */
	a = row_id(EXTJSON_HEALTH_EVENTS, "{\"_id\":\"event-17\"," HE "}", &kept, &doc);
	free(doc);
	b = row_id(EXTJSON_HEALTH_EVENTS, "{" HE ",\"_id\":\"event-17\"}", &kept, &doc);
	assert_string_equal(a, b);
	assert_true(kept);
	assert_int_equal(a[14], '5');
	assert_true(strchr("89ab", a[19]) != NULL);
	assert_string_equal(doc, "{" HE ",\"_id\":\"event-17\"}");
	free(a);
	free(b);
	free(doc);
	a = row_id(EXTJSON_HEALTH_EVENTS, "{\"_id\":{\"$numberLong\":\"17\"}," HE "}", &kept, &doc);
	free(doc);
	b = row_id(EXTJSON_HEALTH_EVENTS, "{\"_id\":17," HE "}", &kept, &doc);
	assert_string_equal(a, b);
	free(a);
	free(b);
	free(doc);
	/* No _id: derived from the document itself. */
	a = row_id(EXTJSON_HEALTH_EVENTS, "{" HE "}", &kept, &doc);
	free(doc);
	b = row_id(EXTJSON_HEALTH_EVENTS, "{ " HE " }", &kept, &doc);
	assert_string_equal(a, b);
	assert_false(kept);
	free(b);
	free(doc);
	b = row_id(EXTJSON_HEALTH_EVENTS, "{\"healthevent\":{\"nodename\":\"m\"}}", &kept, &doc);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	free(doc);
#undef HE
}

static const char mongo_maintenance[] =
	"{\"_id\":{\"$oid\":\"65b000000000000000000001\"},\"eventId\":\"aws-maint-0001\",\"csp\":\"aws\","
	"\"clusterName\":\"prod-east\",\"resourceType\":\"EC2\",\"resourceId\":\"i-0abc\","
	"\"maintenanceType\":\"SCHEDULED\",\"status\":\"MAINTENANCE_COMPLETE\",\"cspStatus\":\"COMPLETED\","
	"\"scheduledStartTime\":{\"$date\":\"2024-02-01T02:00:00Z\"},"
	"\"actualEndTime\":{\"$date\":\"2024-02-01T03:10:00Z\"},"
	"\"eventReceivedTimestamp\":{\"$date\":\"2024-01-30T12:00:00.250Z\"},"
	"\"lastUpdatedTimestamp\":{\"$date\":\"2024-02-01T03:11:00Z\"},"
	"\"recommendedAction\":\"RESTART_VM\",\"metadata\":{\"region\":\"us-east-1\"},\"nodeName\":\"gpu-node-03\"}";

static void test_maintenance_row(void **state)
{
	const char *const *cols = extjson_columns(EXTJSON_MAINTENANCE_EVENTS);
	struct extjson_row row;
	char err[256] = "";
	unsigned i;
	static const char *const want[] = {
		"65b00000-0000-8000-8000-000000000001", "aws-maint-0001", "aws", "prod-east", "gpu-node-03",
		"MAINTENANCE_COMPLETE", "COMPLETED", "2024-02-01T02:00:00Z", "2024-02-01T03:10:00Z",
		"2024-01-30T12:00:00.25Z", "2024-02-01T03:11:00Z", NULL, "2024-01-30T12:00:00.25Z",
		"2024-02-01T03:11:00Z",
	};

	(void)state;
	assert_int_equal(extjson_convert(EXTJSON_MAINTENANCE_EVENTS, mongo_maintenance, strlen(mongo_maintenance),
					 &row, err, sizeof(err)), 0);
	assert_int_equal(row.ncols, 14);
	for (i = 0; i < row.ncols; i++) {
		if (strcmp(cols[i], "document") == 0)
			continue;
		if (!want[i])
			assert_null(row.val[i]);
		else if (!row.val[i] || strcmp(row.val[i], want[i]) != 0)
			fail_msg("%s: got %s, want %s", cols[i], row.val[i] ? row.val[i] : "NULL", want[i]);
	}
	assert_null(cols[i]);
	assert_non_null(strstr(row.val[11], "\"scheduledStartTime\":\"2024-02-01T02:00:00Z\""));
	assert_null(strstr(row.val[11], "_id"));
	extjson_row_clear(&row);
}

static void row_err(enum extjson_table t, const char *doc, const char *want)
{
	struct extjson_row row;
	char err[256] = "";
	unsigned i;

	if (extjson_convert(t, doc, strlen(doc), &row, err, sizeof(err)) == 0)
		fail_msg("%s: accepted", doc);
	if (!strstr(err, want))
		fail_msg("%s: error \"%s\" lacks \"%s\"", doc, err, want);
	for (i = 0; i < EXTJSON_MAX_COLS; i++)
		assert_null(row.val[i]);
}

static void test_row_refusals(void **state)
{
	char long_name[400], doc[700], err[256];
	struct extjson_row row;
	int i, n;

	(void)state;
	row_err(EXTJSON_HEALTH_EVENTS, "[1]", "not a document");
	row_err(EXTJSON_HEALTH_EVENTS, mongo_maintenance, "no healthevent object");
	row_err(EXTJSON_MAINTENANCE_EVENTS, mongo_health, "eventId is missing");
	row_err(EXTJSON_HEALTH_EVENTS, "{\"healthevent\":{\"nodename\":7}}", "healthevent.nodeName: expected a string");
	row_err(EXTJSON_HEALTH_EVENTS, "{\"healthevent\":{\"nodename\":\"n\"},\"healtheventstatus\":{\"faultremediated\":1}}",
		"faultremediated: expected a boolean");
	row_err(EXTJSON_HEALTH_EVENTS, "{\"healthevent\":{\"nodename\":\"n\"},\"createdAt\":\"yesterday\"}",
		"createdAt: \"yesterday\" is not an RFC 3339 time");
	row_err(EXTJSON_HEALTH_EVENTS,
		"{\"healthevent\":{\"nodename\":\"n\"},\"healtheventstatus\":{\"drainfinishtimestamp\":{\"seconds\":\"x\"}}}",
		"drainFinishTimestamp: expected {\"seconds\"");
	memset(long_name, 'x', 300);
	long_name[300] = '\0';
	snprintf(doc, sizeof(doc), "{\"healthevent\":{\"nodename\":\"%s\"}}", long_name);
	row_err(EXTJSON_HEALTH_EVENTS, doc, "longer than the 255 characters");
	/* VARCHAR counts characters, not bytes: 255 two-byte ones fit. */
	n = snprintf(doc, sizeof(doc), "{\"healthevent\":{\"nodename\":\"");
	for (i = 0; i < 255; i++)
		n += snprintf(doc + n, sizeof(doc) - (size_t)n, "\xc3\xa9");
	snprintf(doc + n, sizeof(doc) - (size_t)n, "\"}}");
	assert_int_equal(extjson_convert(EXTJSON_HEALTH_EVENTS, doc, strlen(doc), &row, err, sizeof(err)), 0);
	extjson_row_clear(&row);
	row_err(EXTJSON_MAINTENANCE_EVENTS, "{\"eventId\":\"e\",\"csp\":\"aws\"}", "eventReceivedTimestamp is missing");
	row_err(EXTJSON_MAINTENANCE_EVENTS, "{\"eventId\":\"\",\"eventReceivedTimestamp\":\"2024-01-01T00:00:00Z\"}",
		"eventId is empty");
}

static void test_table_names(void **state)
{
	enum extjson_table t;

	(void)state;
	assert_int_equal(extjson_table_from_name("HealthEvents", &t), 0);
	assert_int_equal(t, EXTJSON_HEALTH_EVENTS);
	assert_int_equal(extjson_table_from_name("maintenance_events", &t), 0);
	assert_int_equal(t, EXTJSON_MAINTENANCE_EVENTS);
	assert_int_equal(extjson_table_from_name("resume_tokens", &t), -EINVAL);
	assert_string_equal(extjson_table_name(EXTJSON_MAINTENANCE_EVENTS), "maintenance_events");
}

/* --- scanner ----------------------------------------------------------- */

struct got {
	char text[16][256];
	unsigned long line[16], index[16];
	int status[16];
	int n;
	char err[128];
};

/* Splits `in`, fed `chunk` bytes at a time (0: all at once). */
static void split(const char *in, size_t chunk, size_t max_doc, struct got *g)
{
	ExtjsonScanner *s = extjson_scanner_new(max_doc);
	size_t len = strlen(in), off = 0;
	struct extjson_doc d;
	bool eof = false;
	int r;

	memset(g, 0, sizeof(*g));
	assert_non_null(s);
	for (;;) {
		if (!eof) {
			size_t n = chunk && len - off > chunk ? chunk : len - off;
			assert_int_equal(extjson_scanner_feed(s, in + off, n), 0);
			off += n;
			eof = off == len;
		}
		while ((r = extjson_scanner_next(s, eof, &d, g->err, sizeof(g->err))) != 0) {
			assert_true(g->n < 16);
			g->status[g->n] = r;
			if (r == 1)
				snprintf(g->text[g->n], sizeof(g->text[0]), "%.*s", (int)d.len, d.text);
			if (r == 1 || r == -EMSGSIZE) {
				g->line[g->n] = d.line;
				g->index[g->n] = d.index;
			}
			g->n++;
			if (r == -EBADMSG)
				goto out;
		}
		if (eof)
			break;
	}
out:
	extjson_scanner_free(s);
}

/* The same documents whatever the chunking. */
static void split_all_ways(const char *in, size_t max_doc, struct got *g)
{
	struct got other;
	size_t chunk;
	int i;

	split(in, 0, max_doc, g);
	for (chunk = 1; chunk <= 7; chunk++) {
		split(in, chunk, max_doc, &other);
		assert_int_equal(other.n, g->n);
		for (i = 0; i < g->n; i++) {
			assert_int_equal(other.status[i], g->status[i]);
			assert_string_equal(other.text[i], g->text[i]);
			assert_int_equal(other.line[i], g->line[i]);
		}
		assert_string_equal(other.err, g->err);
	}
}

static void test_scan_lines(void **state)
{
	struct got g;

	(void)state;
	split_all_ways("\xEF\xBB\xBF{\"a\":1}\r\n\n  {\"b\":\"}{\\\"\"}\n{\"c\":[1,{}]}", 1024, &g);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.text[0], "{\"a\":1}");
	assert_string_equal(g.text[1], "{\"b\":\"}{\\\"\"}");
	assert_string_equal(g.text[2], "{\"c\":[1,{}]}");
	assert_int_equal(g.line[0], 1);
	assert_int_equal(g.line[1], 3);
	assert_int_equal(g.line[2], 4);
	assert_int_equal(g.index[2], 3);

	/* --pretty: a document over several lines, closing brace at column 0. */
	split_all_ways("{\n\t\"a\": {\n\t\t\"b\": 1\n\t}\n}\n{\n\t\"c\": 2\n}\n", 1024, &g);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.text[0], "{\n\t\"a\": {\n\t\t\"b\": 1\n\t}\n}");
	assert_int_equal(g.line[1], 6);

	/* A truncated line and a line with an open string cost one document
	 * each; garbage is a document of its own for the converter to refuse. */
	split_all_ways("{\"a\":1}\n{\"b\":{\"c\":2\n{\"d\":\"open\n{\"e\":3}\ngarbage\n{\"f\":4}", 1024, &g);
	assert_int_equal(g.n, 6);
	assert_string_equal(g.text[1], "{\"b\":{\"c\":2");
	assert_string_equal(g.text[2], "{\"d\":\"open");
	assert_string_equal(g.text[3], "{\"e\":3}");
	assert_string_equal(g.text[4], "garbage");
	assert_string_equal(g.text[5], "{\"f\":4}");
	assert_int_equal(g.line[5], 6);
	assert_int_equal(g.index[5], 6);
}

static void test_scan_array(void **state)
{
	struct got g;

	(void)state;
	split_all_ways(" [{\"a\":\"],[\"},{\"b\":[1]}]\n", 1024, &g);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.text[0], "{\"a\":\"],[\"}");
	assert_string_equal(g.text[1], "{\"b\":[1]}");
	assert_int_equal(g.index[1], 2);
	split_all_ways("[\n\t{\n\t\t\"a\": 1\n\t},\n\t{\n\t\t\"b\": 2\n\t}\n]", 1024, &g);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.line[1], 5);
	split_all_ways("[]", 1024, &g);
	assert_int_equal(g.n, 0);
	split_all_ways("[{\"a\":1}, 7 ,\"s,]\"]", 1024, &g);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.text[1], "7");
	assert_string_equal(g.text[2], "\"s,]\"");

	split_all_ways("[{\"a\":1}{\"b\":2}]", 1024, &g);
	assert_int_equal(g.status[g.n - 1], -EBADMSG);
	assert_string_equal(g.err, "line 1: expected ',' or ']' between documents of the --jsonArray");
	split_all_ways("[{\"a\":1},\n{\"b\":2}", 1024, &g);
	assert_int_equal(g.n, 3);
	assert_int_equal(g.status[2], -EBADMSG);
	assert_string_equal(g.err, "line 2: the export ends before the closing ']' of the --jsonArray");
	split_all_ways("[{\"a\":1},{\"b\":", 1024, &g);
	assert_string_equal(g.err, "line 1: the export ends inside a document");
	split_all_ways("[{\"a\":1},]", 1024, &g);
	assert_int_equal(g.status[1], -EBADMSG);
	split_all_ways("[{\"a\":1}] x", 1024, &g);
	assert_int_equal(g.status[1], -EBADMSG);
}

static void test_scan_oversized(void **state)
{
	struct got g;

	(void)state;
	split_all_ways("{\"a\":\"0123456789\"}\n{\"b\":1}\n{\"c\":\"0123456789012345\"}\n", 16, &g);
	assert_int_equal(g.n, 3);
	assert_int_equal(g.status[0], -EMSGSIZE);
	assert_int_equal(g.line[0], 1);
	assert_int_equal(g.status[1], 1);
	assert_string_equal(g.text[1], "{\"b\":1}");
	assert_int_equal(g.status[2], -EMSGSIZE);
	assert_int_equal(g.line[2], 3);
	split_all_ways("[{\"a\":\"0123456789012345\"},{\"b\":1}]", 16, &g);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.status[0], -EMSGSIZE);
	assert_string_equal(g.text[1], "{\"b\":1}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_relaxed_v2),
		cmocka_unit_test(test_canonical_v2),
		cmocka_unit_test(test_legacy_v1),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_health_row),
		cmocka_unit_test(test_health_row_fresh),
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_maintenance_row),
		cmocka_unit_test(test_row_refusals),
		cmocka_unit_test(test_table_names),
		cmocka_unit_test(test_scan_lines),
		cmocka_unit_test(test_scan_array),
		cmocka_unit_test(test_scan_oversized),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
