/*
 * replay.c - runs a libFuzzer target over its corpus without libFuzzer, so
 * `make check` replays every corpus and saved crasher with the normal
 * compiler (and under the sanitizer build).  Linked with one fuzz_*.c per
 * binary by the Makefile.
 *
 * Arguments are corpus directories or files; without any, the directory
 * compiled in as REPLAY_CORPUS.  Each file is read into a buffer of its
 * exact size (so an overread is caught) and passed to
 * LLVMFuzzerTestOneInput.  Output is TAP, one "ok" per file in name order;
 * a target that finds a broken invariant aborts, which fails the run.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads path whole; NULL with errno set on failure. */
static uint8_t *
slurp(const char *path, size_t *ret_len)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf = NULL;
	struct stat st;

	if (fp == NULL)
		return NULL;
	if (fstat(fileno(fp), &st) < 0 || st.st_size < 0)
		goto out;
	/* malloc(0) may return NULL: always ask for at least one byte. */
	buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
	if (buf == NULL)
		goto out;
	if (fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
		free(buf);
		buf = NULL;
		errno = EIO;
		goto out;
	}
	*ret_len = (size_t)st.st_size;
out:
	fclose(fp);
	return buf;
}

static int
run_file(const char *path, int *n)
{
	size_t len = 0;
	uint8_t *buf = slurp(path, &len);

	if (buf == NULL) {
		printf("not ok %d - %s: %s\n", ++*n, path, strerror(errno));
		return 1;
	}
	fflush(stdout);
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	printf("ok %d - %s\n", ++*n, path);
	return 0;
}

static int
run_dir(const char *dir, int *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t count = 0, cap = 0;
	int failed = 0;

	if (d == NULL) {
		printf("not ok %d - %s: %s\n", ++*n, dir, strerror(errno));
		return 1;
	}
	while ((de = readdir(d)) != NULL) {
		char path[4096];
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (count == cap) {
			char **grown = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof(*names));

			if (grown == NULL)
				abort();
			names = grown;
		}
		if ((names[count++] = strdup(path)) == NULL)
			abort();
	}
	closedir(d);
	if (count == 0) {
		printf("not ok %d - %s: empty corpus\n", ++*n, dir);
		failed = 1;
	}
	qsort(names, count, sizeof(*names), cmp_names);
	for (size_t i = 0; i < count; i++) {
		failed |= run_file(names[i], n);
		free(names[i]);
	}
	free(names);
	return failed;
}

int
main(int argc, char **argv)
{
#ifdef REPLAY_CORPUS
	static char *fallback[] = { NULL, REPLAY_CORPUS, NULL };
#else
	static char *fallback[] = { NULL, NULL };
#endif
	int n = 0, failed = 0;

	if (argc < 2) {
		argv = fallback;
		argc = (int)(sizeof(fallback) / sizeof(fallback[0])) - 1;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: %s corpus-dir-or-file...\n", argv[0] ? argv[0] : "replay");
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) == 0 && S_ISREG(st.st_mode))
			failed |= run_file(argv[i], &n);
		else
			failed |= run_dir(argv[i], &n);
	}
	printf("1..%d\n", n);
	return failed;
}
