/*
 * gateway/util/files.c — file reading and folder walking (see files.h).
 */
#include "gateway/util/files.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool add_path(file_list *l, const char *path)
{
    if (l->count == l->capacity) {
        size_t cap = l->capacity ? l->capacity * 2 : 256;
        char **paths = realloc(l->paths, cap * sizeof *paths);
        if (!paths)
            return false;
        l->paths = paths;
        l->capacity = cap;
    }
    l->paths[l->count] = strdup(path);
    return l->paths[l->count++] != NULL;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool is_json_name(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && !strcmp(name + n - 5, ".json");
}

/* The entries of a directory (no dot files), sorted. */
static char **sorted_entries(DIR *d, size_t *count)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        names[n++] = strdup(ent->d_name);
    }
    if (n > 1)
        qsort(names, n, sizeof *names, name_cmp);
    *count = n;
    return names;
}

static bool collect_dir(file_list *l, const char *dir, const char *who)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: cannot open %s: %s\n", who, dir, strerror(errno));
        return false;
    }
    size_t count;
    char **names = sorted_entries(d, &count);
    closedir(d);
    bool ok = true;
    for (size_t i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
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

char *files_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t size = 0, cap = 0;
    for (;;) {
        if (cap - size < 65536) {
            cap = cap ? cap * 2 : 131072;
            char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = grown;
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
