/*
 * gateway/util/files.c — file reading and folder walking (see files.h).
 */
#include "gateway/util/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fhir/array.h"

static bool add_path(file_list *l, const char *path)
{
    if (!fa_reserve(&l->paths, &l->capacity, l->count + 1, sizeof *l->paths))
        return false;
    l->paths[l->count] = strdup(path);
    return l->paths[l->count++] != NULL;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_json_name(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && !strcmp(name + n - 5, ".json");
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The entries of a directory (no dot files), sorted. False when out of memory (never a partial list). */
static bool sorted_entries(DIR *d, char ***out, size_t *count)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.')
            continue;
        if (!fa_reserve(&names, &cap, n + 1, sizeof *names) || !(names[n] = strdup(ent->d_name))) {
            free_names(names, n);
            return false;
        }
        n++;
    }
    if (n > 1)
        qsort(names, n, sizeof *names, name_cmp);
    *out = names;
    *count = n;
    return true;
}

static bool collect_dir(file_list *l, const char *dir, const char *who)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: cannot open %s: %s\n", who, dir, strerror(errno));
        return false;
    }
    size_t count = 0;
    char **names = NULL;
    bool listed = sorted_entries(d, &names, &count);
    closedir(d);
    if (!listed) {
        fprintf(stderr, "%s: %s: out of memory\n", who, dir);
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < count; i++) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= sizeof path) {
            fprintf(stderr, "%s: %s/%s: path longer than %zu bytes\n", who, dir, names[i], sizeof path - 1);
            ok = false; /* cut, it would name another file */
            free(names[i]);
            continue;
        }
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            ok = collect_dir(l, path, who) && ok;
        else if (is_json_name(names[i]))
            ok = add_path(l, path) && ok;
        free(names[i]);
    }
    free(names);
    return ok;
}

bool files_collect(file_list *l, const char *path, const char *who)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: %s: %s\n", who, path, strerror(errno));
        return false;
    }
    if (S_ISDIR(st.st_mode))
        return collect_dir(l, path, who);
    return add_path(l, path);
}

void files_list_free(file_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->paths[i]);
    free(l->paths);
    memset(l, 0, sizeof *l);
}

const char *files_base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

char *files_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (cap - size < 65536 && !fa_reserve(&buf, &cap, size + 65536, 1)) {
            free(buf);
            fclose(f);
            errno = ENOMEM;
            return NULL;
        }
        size_t n = fread(buf + size, 1, cap - size - 1, f);
        size += n;
        if (n == 0)
            break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[size] = '\0';
    *len = size;
    return buf;
}

bool files_sync_dir(const char *dir)
{
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0)
        return false;
    bool ok = fsync(d) == 0;
    int saved = errno;
    close(d);
    errno = saved;
    return ok;
}

static bool all_zero(const char *p, size_t n)
{
    return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

bool files_pwrite_all(int fd, const void *bytes, size_t n, uint64_t at)
{
    const char *p = bytes;
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w, n -= (size_t)w, at += (uint64_t)w;
    }
    return true;
}

static void copy_err(char *err, size_t errlen, const char *what, const char *path)
{
    if (err && errlen)
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno ? errno : EIO));
}

/* Reads want bytes at `at` into buf; false (errno set, EIO for an early end) when fewer came. */
static bool pread_all(int fd, char *buf, size_t want, off_t at)
{
    size_t got = 0;
    errno = 0;
    while (got < want) {
        ssize_t n = pread(fd, buf + got, want - got, at + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < want && !errno)
        errno = EIO;
    return got == want;
}

bool files_copy_sparse(const char *from, const char *to, size_t block, uint64_t *bytes, uint64_t *data_bytes, char *err,
                       size_t errlen)
{
    const size_t chunk = 64 * block;
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1;
    struct stat st;
    char *buf = malloc(chunk);
    bool ok = false;
    if (in < 0 || fstat(in, &st) != 0 || !buf) {
        if (!buf)
            errno = ENOMEM;
        copy_err(err, errlen, "cannot read", from);
        goto done;
    }
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        copy_err(err, errlen, "cannot create", to);
        goto done;
    }
    uint64_t size = (uint64_t)st.st_size;
    for (uint64_t at = 0; at < size;) {
        size_t want = size - at < chunk ? (size_t)(size - at) : chunk;
        if (!pread_all(in, buf, want, (off_t)at)) {
            copy_err(err, errlen, "cannot read", from);
            goto done;
        }
        for (size_t b = 0; b < want; b += block) {
            size_t n = want - b < block ? want - b : block;
            if (all_zero(buf + b, n))
                continue; /* a hole: never written, or freed */
            if (!files_pwrite_all(out, buf + b, n, at + b)) {
                copy_err(err, errlen, "cannot write", to);
                goto done;
            }
            *data_bytes += n;
        }
        at += want;
    }
    if (ftruncate(out, (off_t)size) != 0 || fdatasync(out) != 0) {
        copy_err(err, errlen, "cannot write", to);
        goto done;
    }
    *bytes += size;
    ok = true;
done:
    free(buf);
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0 && ok) {
        copy_err(err, errlen, "cannot close", to);
        ok = false;
    }
    if (out >= 0 && !ok)
        unlink(to); /* no half copy that anyone could take for whole */
    return ok;
}
