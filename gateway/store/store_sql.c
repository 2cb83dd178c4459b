/*
 * gateway/store/store_sql.c — the SQL of the store, for any SQL backend (see store_sql.h).
 *
 * The search SQL, in short: conditions on the index tables, the most
 * selective one driving the query as "r.rid IN (...)" and every other one a
 * correlated EXISTS; chains and _has as nested EXISTS over index_reference
 * joined to resource, each reached resource checked for visibility; keyset
 * paging on (lastUpdated as of the snapshot, rid). store_sqlite.c has the
 * history of why each shape was chosen over the obvious one.
 */
#include "gateway/store/store_sql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/array.h"
#include "gateway/store/store_backend.h"
#include "gateway/util/personal.h"

/* ---- Rendering templates ---------------------------------------------------------------- */

typedef struct token {
    const char *name;
    size_t offset; /* of a const char * in sql_dialect */
} token;

#define TOKEN(name, field)                 \
    {                                      \
        name, offsetof(sql_dialect, field) \
    }
static const token TOKENS[] = {
    TOKEN("INT", int_type),
    TOKEN("ROWID", row_id),
    TOKEN("REAL", real_type),
    TOKEN("WITHOUT_ROWID", without_rowid),
    TOKEN("INSERT_IGNORE", insert_ignore),
    TOKEN("ON_CONFLICT_IGNORE", on_conflict_ignore),
    TOKEN("AGG", string_agg),
    TOKEN("US", unit_separator),
    TOKEN("BEGIN_WRITE", begin_write),
};

/* The text a {TOKEN} stands for; NULL when the name is not a token. */
static const char *token_text(const sql_dialect *d, const char *name, size_t len)
{
    if (len == strlen("RETURNING_RID") && !strncmp(name, "RETURNING_RID", len))
        return d->returning ? " RETURNING rid" : "";
    if (len == strlen("RETURNING_SEQ") && !strncmp(name, "RETURNING_SEQ", len))
        return d->returning ? " RETURNING seq" : "";
    for (size_t i = 0; i < sizeof TOKENS / sizeof *TOKENS; i++)
        if (strlen(TOKENS[i].name) == len && !strncmp(TOKENS[i].name, name, len)) {
            const char *text;
            memcpy(&text, (const char *)d + TOKENS[i].offset, sizeof text);
            return text;
        }
    return NULL;
}

/* Appends n bytes to a growing text; false when out of memory. */
static bool append(char **out, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (!fa_reserve(out, cap, *len + n + 1, 1))
        return false;
    memcpy(*out + *len, s, n);
    *len += n;
    (*out)[*len] = '\0';
    return true;
}

char *sql_render(const sql_dialect *d, const char *template_text)
{
    char *out = NULL;
    size_t len = 0, cap = 0;
    bool ok = append(&out, &len, &cap, "", 0);
    for (const char *p = template_text; ok && *p;) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            const char *text = end ? token_text(d, p + 1, (size_t)(end - p - 1)) : NULL;
            if (!text)
                abort(); /* a template naming no token is a bug in this file */
            ok = append(&out, &len, &cap, text, strlen(text));
            p = end + 1;
        } else if (*p == '?' && p[1] >= '0' && p[1] <= '9') { /* ?N: the dialect's numbered placeholder */
            size_t digits = strspn(p + 1, "0123456789");
            ok = append(&out, &len, &cap, &d->placeholder, 1) && append(&out, &len, &cap, p + 1, digits);
            p += 1 + digits;
        } else {
            size_t n = strcspn(p, "{?");
            ok = append(&out, &len, &cap, p, n ? n : 1);
            p += n ? n : 1;
        }
    }
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- The schema --------------------------------------------------------------------------- */

/*
 * The relay queue (gateway/relay, docs/handover.md "Notifications"): a step
 * of its own, only new tables, so that it can be renumbered when another
 * step lands first. seq orders the queue; (receiver, event_number) is unique,
 * so a number is never given twice; the pending index serves the worker's
 * "oldest pending per receiver".
 */
#define MIGRATION_RELAY_QUEUE                                                                                \
    "CREATE TABLE relay_receiver (ura TEXT PRIMARY KEY, last_event {INT} NOT NULL, since_ms {INT} NOT NULL)" \
    "{WITHOUT_ROWID};"                                                                                       \
    "CREATE TABLE relay_notification ("                                                                      \
    "  seq {ROWID},"                                                                                         \
    "  receiver TEXT NOT NULL,"                                                                              \
    "  event_number {INT} NOT NULL,"                                                                         \
    "  event TEXT NOT NULL,"                                                                                 \
    "  focus_type TEXT NOT NULL,"                                                                            \
    "  focus_id TEXT NOT NULL,"                                                                              \
    "  focus_version {INT} NOT NULL,"                                                                        \
    "  created_ms {INT} NOT NULL,"                                                                           \
    "  state {INT} NOT NULL,"                                                                                \
    "  attempts {INT} NOT NULL,"                                                                             \
    "  next_attempt_ms {INT} NOT NULL,"                                                                      \
    "  last_attempt_ms {INT} NOT NULL,"                                                                      \
    "  done_ms {INT} NOT NULL,"                                                                              \
    "  http_status {INT} NOT NULL,"                                                                          \
    "  last_error TEXT NOT NULL,"                                                                            \
    "  UNIQUE (receiver, event_number));"                                                                    \
    "CREATE INDEX relay_pending ON relay_notification (state, receiver, event_number);"

/* MIGRATIONS[v - 1] takes the schema from version v - 1 to v; append, never edit. */
static const char *const MIGRATIONS[] = {
    "CREATE TABLE resource ("
    "  rid {ROWID},"
    "  type TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  version {INT} NOT NULL,"
    "  last_updated {INT} NOT NULL,"
    "  deleted {INT} NOT NULL,"
    "  owner TEXT NOT NULL,"
    "  current_seq {INT} NOT NULL,"
    "  UNIQUE (type, id));"
    "CREATE INDEX resource_by_time ON resource (type, last_updated);"
    "CREATE TABLE resource_version ("
    "  seq {ROWID},"
    "  rid {INT} NOT NULL,"
    "  type TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  version {INT} NOT NULL,"
    "  last_updated {INT} NOT NULL,"
    "  method {INT} NOT NULL,"
    "  json TEXT,"
    "  UNIQUE (rid, version));"
    "CREATE INDEX version_by_type ON resource_version (type, seq);"
    "CREATE TABLE access_tag (tag TEXT NOT NULL, rid {INT} NOT NULL, PRIMARY KEY (tag, rid)){WITHOUT_ROWID};"
    "CREATE INDEX access_tag_by_resource ON access_tag (rid, tag);"
    "CREATE TABLE index_string (rid {INT} NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,"
    "  normalized TEXT NOT NULL, exact TEXT NOT NULL);"
    "CREATE INDEX index_string_value ON index_string (type, param, normalized);"
    "CREATE INDEX index_string_rid ON index_string (rid, param);"
    "CREATE TABLE index_token (rid {INT} NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,"
    "  system TEXT, code TEXT);"
    "CREATE INDEX index_token_value ON index_token (type, param, code);"
    "CREATE INDEX index_token_rid ON index_token (rid, param);"
    "CREATE TABLE index_reference (rid {INT} NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,"
    "  target_type TEXT, target_id TEXT, url TEXT);"
    "CREATE INDEX index_reference_value ON index_reference (type, param, target_id);"
    "CREATE INDEX index_reference_url ON index_reference (type, param, url);"
    "CREATE INDEX index_reference_rid ON index_reference (rid, param);"
    "CREATE TABLE index_date (rid {INT} NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,"
    "  low {INT} NOT NULL, high {INT} NOT NULL);"
    "CREATE INDEX index_date_value ON index_date (type, param, low);"
    "CREATE INDEX index_date_rid ON index_date (rid, param);"
    "CREATE TABLE index_number (rid {INT} NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,"
    "  value {REAL} NOT NULL, system TEXT, code TEXT);"
    "CREATE INDEX index_number_value ON index_number (type, param, value);"
    "CREATE INDEX index_number_rid ON index_number (rid, param);"
    "CREATE TABLE index_uri (rid {INT} NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, uri TEXT NOT NULL);"
    "CREATE INDEX index_uri_value ON index_uri (type, param, uri);"
    "CREATE INDEX index_uri_rid ON index_uri (rid, param);",
    /* 2: access per version (history and vread show a version to whom that version was addressed), and grants:
     * a Task lets its addressees read what it refers to, while its status allows */
    "ALTER TABLE resource_version ADD COLUMN tags TEXT;"
    "UPDATE resource_version SET tags = (SELECT {AGG}(t.tag, {US}) FROM access_tag t"
    "  WHERE t.rid = resource_version.rid);"
    "CREATE TABLE access_grant (tag TEXT NOT NULL, rid {INT} NOT NULL, grantor {INT} NOT NULL,"
    "  PRIMARY KEY (tag, rid, grantor)){WITHOUT_ROWID};"
    "CREATE INDEX access_grant_by_resource ON access_grant (rid, tag);"
    "CREATE INDEX access_grant_by_grantor ON access_grant (grantor);",
    /* 3: index rows holding personal data are marked (gateway/util/personal.h), so that encryption at rest can
     * cover exactly them; the rows already stored are marked after this text (marks_personal_rows) */
    "ALTER TABLE index_string ADD COLUMN personal {INT} NOT NULL DEFAULT 0;"
    "ALTER TABLE index_token ADD COLUMN personal {INT} NOT NULL DEFAULT 0;"
    "ALTER TABLE index_reference ADD COLUMN personal {INT} NOT NULL DEFAULT 0;"
    "ALTER TABLE index_date ADD COLUMN personal {INT} NOT NULL DEFAULT 0;"
    "ALTER TABLE index_number ADD COLUMN personal {INT} NOT NULL DEFAULT 0;"
    "ALTER TABLE index_uri ADD COLUMN personal {INT} NOT NULL DEFAULT 0;",
    /* 4: the NEN 7513 audit trail (docs/audit.md): one row per access, chained by mac; seq is assigned by the
     * commit thread (not generated), so that entries chain in commit order */
    "CREATE TABLE audit_entry ("
    "  seq {INT} PRIMARY KEY,"
    "  time_ms {INT} NOT NULL,"
    "  key_id TEXT NOT NULL,"
    "  ura TEXT NOT NULL,"
    "  org_name TEXT NOT NULL,"
    "  cert_fp TEXT NOT NULL,"
    "  on_behalf TEXT NOT NULL,"
    "  request_id TEXT NOT NULL,"
    "  interaction TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  type TEXT NOT NULL,"
    "  res_id TEXT NOT NULL,"
    "  version {INT} NOT NULL,"
    "  patient TEXT NOT NULL,"
    "  bundle_where TEXT NOT NULL,"
    "  decision TEXT NOT NULL,"
    "  status {INT} NOT NULL,"
    "  mac TEXT NOT NULL);"
    "CREATE INDEX audit_by_organisation ON audit_entry (ura, seq);"
    "CREATE INDEX audit_by_patient ON audit_entry (patient, seq);",
    /* 5: the relay queue */
    MIGRATION_RELAY_QUEUE,
    /* 6: the versions kept in the document log, found without reading every version (a reclaim, doc_log.h) */
    "CREATE INDEX version_in_log ON resource_version (json) WHERE substr(json, 1, 7) = 'fgdoc1.';",
};
_Static_assert(sizeof MIGRATIONS / sizeof *MIGRATIONS == SQL_SCHEMA_VERSION, "one migration per schema version");

/* The steps after whose text the rows already stored are marked as the personal-data table says. Marking is
 * idempotent: a step appended when the table grows may mark again. */
static bool marks_personal_rows(int step)
{
    return step == 3;
}

static bool append_str(char **out, size_t *len, size_t *cap, const char *s)
{
    return append(out, len, cap, s, strlen(s));
}

/* Appends "UPDATE <table> SET personal = 1 WHERE personal = 0 AND ((type = 'Patient' AND param IN ('address',
 * ...)) OR ...);" for every index table. The names are literals of our own table ([A-Za-z-]), never input. */
static bool append_personal_marking(char **out, size_t *len, size_t *cap)
{
    static const char *const tables[] = {"index_string", "index_token",  "index_reference",
                                         "index_date",   "index_number", "index_uri"};
    bool ok = true;
    for (size_t t = 0; ok && t < sizeof tables / sizeof *tables; t++) {
        ok = append_str(out, len, cap, "UPDATE ") && append_str(out, len, cap, tables[t]) &&
             append_str(out, len, cap, " SET personal = 1 WHERE personal = 0 AND (");
        for (size_t i = 0; ok && i < pd_param_count; i++) {
            const pd_param *p = &pd_params[i];
            bool first_of_type = i == 0 || strcmp(pd_params[i - 1].type, p->type) != 0;
            bool last_of_type = i + 1 == pd_param_count || strcmp(pd_params[i + 1].type, p->type) != 0;
            if (first_of_type)
                ok = append_str(out, len, cap, i ? " OR (type = '" : "(type = '") &&
                     append_str(out, len, cap, p->type) && append_str(out, len, cap, "' AND param IN (");
            ok = ok && append_str(out, len, cap, first_of_type ? "'" : ", '") && append_str(out, len, cap, p->param) &&
                 append_str(out, len, cap, "'");
            if (ok && last_of_type)
                ok = append_str(out, len, cap, "))");
        }
        ok = ok && append_str(out, len, cap, ");");
    }
    return ok;
}

char *sql_migration(const sql_dialect *d, int step)
{
    if (step < 1 || step > SQL_SCHEMA_VERSION)
        return NULL;
    char *out = sql_render(d, MIGRATIONS[step - 1]);
    if (!out || !marks_personal_rows(step))
        return out;
    size_t len = strlen(out), cap = len + 1;
    if (!append_personal_marking(&out, &len, &cap)) {
        free(out);
        return NULL;
    }
    return out;
}

char *sql_schema_version_record(int version)
{
    char text[64];
    snprintf(text, sizeof text, "INSERT INTO schema_version VALUES (%d)", version);
    return strdup(text);
}

/* The index table of each value kind (quantities share the number table). */
static const char *const INDEX_TABLE[] = {
    [ST_KIND_STRING] = "index_string", [ST_KIND_TOKEN] = "index_token",   [ST_KIND_REFERENCE] = "index_reference",
    [ST_KIND_DATE] = "index_date",     [ST_KIND_NUMBER] = "index_number", [ST_KIND_QUANTITY] = "index_number",
    [ST_KIND_URI] = "index_uri",
};

/* ---- Fixed statements ------------------------------------------------------------------- */

/* The organisations that may read the current version of r: its addressees and those a Task grants it to. */
#define SELECT_TAGS                                                                     \
    "(SELECT {AGG}(tag, {US}) FROM (SELECT t.tag FROM access_tag t WHERE t.rid = r.rid" \
    " UNION SELECT g.tag FROM access_grant g WHERE g.rid = r.rid) AS u)"

/* The audit table's columns in the order of sql_audit_col (and of SQL_INSERT_AUDIT's parameters). */
#define AUDIT_COLUMNS                                                                                          \
    "seq, time_ms, key_id, ura, org_name, cert_fp, on_behalf, request_id, interaction, action, type, res_id, " \
    "version, patient, bundle_where, decision, status, mac"

static const char *const FIXED[SQL_FIXED_COUNT] = {
    [SQL_BEGIN_BATCH] = "{BEGIN_WRITE}",
    [SQL_COMMIT_BATCH] = "COMMIT",
    [SQL_ROLLBACK_BATCH] = "ROLLBACK",
    [SQL_SAVEPOINT] = "SAVEPOINT txn",
    [SQL_RELEASE] = "RELEASE txn",
    [SQL_ROLLBACK_TO] = "ROLLBACK TO txn",
    [SQL_BEGIN_READ] = "BEGIN",
    [SQL_END_READ] = "COMMIT",
    [SQL_FIND_RESOURCE] = "SELECT rid, version, deleted, last_updated FROM resource WHERE type = ?1 AND id = ?2",
    [SQL_INSERT_RESOURCE] = "INSERT INTO resource (type, id, version, last_updated, deleted, owner, current_seq)"
                            " VALUES (?1, ?2, 0, 0, 0, ?3, 0){RETURNING_RID}",
    [SQL_UPDATE_RESOURCE] = "UPDATE resource SET version = ?2, last_updated = ?3, deleted = ?4, current_seq = ?5"
                            " WHERE rid = ?1",
    /* tags NULL (a deletion): the version is addressed as the one it deletes */
    [SQL_INSERT_VERSION] = "INSERT INTO resource_version (rid, type, id, version, last_updated, method, json, tags)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, coalesce(?8, (SELECT {AGG}(t.tag, {US})"
                           " FROM access_tag t WHERE t.rid = ?1))){RETURNING_SEQ}",
    [SQL_DELETE_TAGS] = "DELETE FROM access_tag WHERE rid = ?1",
    [SQL_INSERT_TAG] = "{INSERT_IGNORE} access_tag (tag, rid) VALUES (?2, ?1){ON_CONFLICT_IGNORE}",
    [SQL_INSERT_STRING] = "INSERT INTO index_string (rid, type, param, normalized, exact, personal)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [SQL_INSERT_TOKEN] = "INSERT INTO index_token (rid, type, param, system, code, personal)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [SQL_INSERT_REFERENCE] = "INSERT INTO index_reference (rid, type, param, target_type, target_id, url, personal)"
                             " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [SQL_INSERT_DATE] =
        "INSERT INTO index_date (rid, type, param, low, high, personal) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [SQL_INSERT_NUMBER] = "INSERT INTO index_number (rid, type, param, value, system, code, personal)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [SQL_INSERT_URI] = "INSERT INTO index_uri (rid, type, param, uri, personal) VALUES (?1, ?2, ?3, ?4, ?5)",
    [SQL_DELETE_STRING] = "DELETE FROM index_string WHERE rid = ?1",
    [SQL_DELETE_TOKEN] = "DELETE FROM index_token WHERE rid = ?1",
    [SQL_DELETE_REFERENCE] = "DELETE FROM index_reference WHERE rid = ?1",
    [SQL_DELETE_DATE] = "DELETE FROM index_date WHERE rid = ?1",
    [SQL_DELETE_NUMBER] = "DELETE FROM index_number WHERE rid = ?1",
    [SQL_DELETE_URI] = "DELETE FROM index_uri WHERE rid = ?1",
    [SQL_READ_CURRENT] = "SELECT r.type, r.id, v.version, v.last_updated, v.method, v.json, r.owner, " SELECT_TAGS
                         " FROM resource r JOIN resource_version v ON v.seq = r.current_seq"
                         " WHERE r.type = ?1 AND r.id = ?2",
    [SQL_DELETE_GRANTS] = "DELETE FROM access_grant WHERE grantor = ?1",
    [SQL_INSERT_GRANT] = "{INSERT_IGNORE} access_grant (tag, rid, grantor)"
                         " SELECT ?3, rid, ?1 FROM resource WHERE type = ?2 AND id = ?4 AND deleted = 0"
                         "{ON_CONFLICT_IGNORE}",
    /* a version is read by whom that version was addressed to (not the current addressees) */
    [SQL_READ_VERSION] = "SELECT r.type, r.id, v.version, v.last_updated, v.method, v.json, r.owner, v.tags"
                         " FROM resource r JOIN resource_version v ON v.rid = r.rid AND v.version = ?3"
                         " WHERE r.type = ?1 AND r.id = ?2",
    [SQL_LAST_SEQ] = "SELECT coalesce(max(seq), 0) FROM resource_version",
    [SQL_LOGGED_BODIES] = "SELECT json FROM resource_version WHERE rid = ?1 AND substr(json, 1, 7) = 'fgdoc1.'",
    [SQL_ERASE_BODIES] = "UPDATE resource_version SET json = NULL WHERE rid = ?1",
    [SQL_ALL_LOGGED] = "SELECT json FROM resource_version WHERE substr(json, 1, 7) = 'fgdoc1.'",
    [SQL_INSERT_AUDIT] = "INSERT INTO audit_entry (" AUDIT_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
                         " ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    [SQL_AUDIT_HEAD] = "SELECT seq, mac FROM audit_entry ORDER BY seq DESC LIMIT 1",
    [SQL_AUDIT_GET] = "SELECT " AUDIT_COLUMNS " FROM audit_entry WHERE seq = ?1",
    [SQL_AUDIT_AFTER] = "SELECT " AUDIT_COLUMNS " FROM audit_entry WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    [SQL_AUDIT_OF_BEFORE] = "SELECT " AUDIT_COLUMNS " FROM audit_entry WHERE ura = ?1 AND seq < ?2"
                            " ORDER BY seq DESC LIMIT ?3",
};

char *sql_fixed_text(const sql_dialect *d, sql_fixed which)
{
    return (unsigned)which < SQL_FIXED_COUNT ? sql_render(d, FIXED[which]) : NULL;
}

/* ---- The relay queue's statements ------------------------------------------------------------ */

#define NOTIFY_COLUMNS                                                                                       \
    "seq, receiver, event_number, event, focus_type, focus_id, focus_version, created_ms, state, attempts, " \
    "next_attempt_ms, last_attempt_ms, done_ms, http_status, last_error"

static const char *const NOTIFY[SQL_NOTIFY_COUNT] = {
    [SQL_NOTIFY_RECEIVER] = "{INSERT_IGNORE} relay_receiver (ura, last_event, since_ms) VALUES (?1, 0, ?2)"
                            "{ON_CONFLICT_IGNORE}",
    [SQL_NOTIFY_NEXT_NUMBER] = "UPDATE relay_receiver SET last_event = last_event + 1 WHERE ura = ?1",
    [SQL_NOTIFY_LAST_NUMBER] = "SELECT last_event FROM relay_receiver WHERE ura = ?1",
    [SQL_NOTIFY_INSERT] = "INSERT INTO relay_notification (receiver, event_number, event, focus_type, focus_id,"
                          " focus_version, created_ms, state, attempts, next_attempt_ms, last_attempt_ms, done_ms,"
                          " http_status, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,"
                          " ?14){RETURNING_SEQ}",
    /* done_ms: when it stopped being pending */
    [SQL_NOTIFY_UPDATE] = "UPDATE relay_notification SET state = ?2, attempts = attempts + 1, next_attempt_ms = ?3,"
                          " last_attempt_ms = ?4, http_status = ?5, last_error = ?6,"
                          " done_ms = CASE WHEN ?2 = 0 THEN 0 ELSE ?4 END WHERE seq = ?1 AND state = 0",
    [SQL_NOTIFY_DUE_HEADS] = "SELECT " NOTIFY_COLUMNS " FROM relay_notification n WHERE n.state = 0"
                             " AND n.event_number = (SELECT min(m.event_number) FROM relay_notification m"
                             " WHERE m.state = 0 AND m.receiver = n.receiver)"
                             " ORDER BY n.next_attempt_ms, n.seq LIMIT ?1",
    [SQL_NOTIFY_OF_RECEIVER] = "SELECT " NOTIFY_COLUMNS " FROM relay_notification WHERE receiver = ?1"
                               " AND event_number BETWEEN ?3 AND ?4 ORDER BY event_number LIMIT ?2",
    [SQL_NOTIFY_OF_RECEIVER_DESC] = "SELECT " NOTIFY_COLUMNS " FROM relay_notification WHERE receiver = ?1"
                                    " AND event_number BETWEEN ?3 AND ?4 ORDER BY event_number DESC LIMIT ?2",
    [SQL_NOTIFY_PENDING_OF] = "SELECT " NOTIFY_COLUMNS " FROM relay_notification WHERE state = 0 AND receiver = ?1"
                              " ORDER BY event_number LIMIT ?2", /* the relay_pending index */
    [SQL_NOTIFY_ALL] = "SELECT " NOTIFY_COLUMNS " FROM relay_notification ORDER BY seq LIMIT ?1",
    [SQL_NOTIFY_COUNTS] = "SELECT state, count(*) FROM relay_notification GROUP BY state",
    [SQL_NOTIFY_JUMP] = "UPDATE relay_receiver SET last_event = last_event + ?1",
    /* state 1 = delivered; the relay_pending index (state, receiver, event_number) finds them */
    /* the oldest few delivered rows only (index relay_pending, in order): "done_ms < ?2" over all of them
     * read every delivered row the receiver has kept on each mark */
    [SQL_NOTIFY_PRUNE] = "DELETE FROM relay_notification WHERE done_ms < ?2 AND seq IN (SELECT o.seq"
                         " FROM relay_notification o, relay_notification m WHERE m.seq = ?1 AND o.state = 1"
                         " AND o.receiver = m.receiver AND o.event_number < m.event_number"
                         " ORDER BY o.event_number LIMIT ?3)",
};

char *sql_notify_text(const sql_dialect *d, sql_notify_stmt which)
{
    return (unsigned)which < SQL_NOTIFY_COUNT ? sql_render(d, NOTIFY[which]) : NULL;
}

/* ---- Building statements ------------------------------------------------------------------ */

void sql_builder_init(sql_builder *b, const sql_dialect *d)
{
    memset(b, 0, sizeof *b);
    b->dialect = d;
}

void sql_builder_free(sql_builder *b)
{
    free(b->text);
    free(b->binds);
    for (size_t i = 0; i < b->owned_count; i++)
        free(b->owned[i]);
    free(b->owned);
    const sql_dialect *d = b->dialect;
    sql_builder_init(b, d);
}

static void sb_add(sql_builder *b, const char *text)
{
    if (b->oom || !append(&b->text, &b->len, &b->cap, text, strlen(text)))
        b->oom = true;
}

/* A template's text ({TOKEN}s, no parameters) in the builder's dialect. */
static void sb_template(sql_builder *b, const char *template_text)
{
    char *text = b->oom ? NULL : sql_render(b->dialect, template_text);
    if (!text) {
        b->oom = true;
        return;
    }
    sb_add(b, text);
    free(text);
}

/* A placeholder for the next value: "?" (SQLite numbers them itself) or "$N". */
static sql_value *sb_bind(sql_builder *b)
{
    if (b->oom || !fa_reserve(&b->binds, &b->bind_cap, b->bind_count + 1, sizeof *b->binds)) {
        b->oom = true;
        return NULL;
    }
    char mark[24];
    if (b->dialect->placeholder == '?')
        snprintf(mark, sizeof mark, "?");
    else
        snprintf(mark, sizeof mark, "%c%zu", b->dialect->placeholder, b->bind_count + 1);
    sb_add(b, mark);
    return b->oom ? NULL : &b->binds[b->bind_count++];
}

static void sb_text(sql_builder *b, const char *text)
{
    sql_value *v = sb_bind(b);
    if (v)
        *v = sql_text(text);
}

static void sb_int(sql_builder *b, int64_t value)
{
    sql_value *v = sb_bind(b);
    if (v)
        *v = sql_int(value);
}

static void sb_real(sql_builder *b, double value)
{
    sql_value *v = sb_bind(b);
    if (v)
        *v = (sql_value){.kind = SQL_REAL, .real = value};
}

/* Keeps text alive until the builder is freed. */
static const char *sb_own(sql_builder *b, char *text)
{
    if (!text || b->oom || !fa_reserve(&b->owned, &b->owned_cap, b->owned_count + 1, sizeof *b->owned)) {
        free(text);
        b->oom = true;
        return "";
    }
    b->owned[b->owned_count++] = text;
    return text;
}

/* ---- Search conditions ------------------------------------------------------------------ */

/*
 * FHIR's date prefixes over ranges: the row [low, high] against the query
 * range [ql, qh] (both inclusive). For _lastUpdated low and high are the
 * same column.
 */
static void date_expr(sql_builder *b, st_prefix prefix, const char *low, const char *high, int64_t ql, int64_t qh)
{
    char col[160];
    switch (prefix) {
    case ST_NE:
        sb_add(b, "NOT ");
        /* fall through */
    case ST_EQ:
        snprintf(col, sizeof col, "(%s >= ", low), sb_add(b, col), sb_int(b, ql);
        snprintf(col, sizeof col, " AND %s <= ", high), sb_add(b, col), sb_int(b, qh), sb_add(b, ")");
        return;
    case ST_GT: /* the range above the value overlaps the row */
        snprintf(col, sizeof col, "%s > ", high), sb_add(b, col), sb_int(b, qh);
        return;
    case ST_LT: snprintf(col, sizeof col, "%s < ", low), sb_add(b, col), sb_int(b, ql); return;
    case ST_GE: /* gt, or the value contains the row */
        sb_add(b, "(");
        date_expr(b, ST_GT, low, high, ql, qh), sb_add(b, " OR "), date_expr(b, ST_EQ, low, high, ql, qh);
        sb_add(b, ")");
        return;
    case ST_LE:
        sb_add(b, "(");
        date_expr(b, ST_LT, low, high, ql, qh), sb_add(b, " OR "), date_expr(b, ST_EQ, low, high, ql, qh);
        sb_add(b, ")");
        return;
    case ST_SA: /* starts after the value ends */
        snprintf(col, sizeof col, "%s > ", low), sb_add(b, col), sb_int(b, qh);
        return;
    case ST_EB: /* ends before the value starts */
        snprintf(col, sizeof col, "%s < ", high), sb_add(b, col), sb_int(b, ql);
        return;
    case ST_AP: /* overlaps */
        snprintf(col, sizeof col, "(%s <= ", low), sb_add(b, col), sb_int(b, qh);
        snprintf(col, sizeof col, " AND %s >= ", high), sb_add(b, col), sb_int(b, ql), sb_add(b, ")");
        return;
    }
}

static void number_expr(sql_builder *b, st_prefix prefix, double value, double low, double high)
{
    if (low == 0 && high == 0)
        low = high = value;
    static const char *const op[] = {[ST_GT] = "x.value > ",  [ST_LT] = "x.value < ", [ST_GE] = "x.value >= ",
                                     [ST_LE] = "x.value <= ", [ST_SA] = "x.value > ", [ST_EB] = "x.value < "};
    double margin = (value < 0 ? -value : value) / 10; /* ap: within 10%, as the spec suggests */
    switch (prefix) {
    case ST_NE:
        sb_add(b, "NOT ");
        /* fall through */
    case ST_EQ: /* [low, high): 5.4 covers 5.35 but not 5.45 */
        if (low == high)
            sb_add(b, "(x.value = "), sb_real(b, value), sb_add(b, ")");
        else
            sb_add(b, "(x.value >= "), sb_real(b, low), sb_add(b, " AND x.value < "), sb_real(b, high), sb_add(b, ")");
        return;
    case ST_AP:
        sb_add(b, "(x.value >= "), sb_real(b, value - margin), sb_add(b, " AND x.value <= ");
        sb_real(b, value + margin), sb_add(b, ")");
        return;
    default: sb_add(b, op[prefix]), sb_real(b, value); return;
    }
}

/* The smallest text greater than every text starting with prefix: its last byte plus one. */
static char *prefix_upper_bound(const char *prefix)
{
    char *upper = strdup(prefix);
    size_t n = upper ? strlen(upper) : 0;
    if (n)
        upper[n - 1] = (char)((unsigned char)upper[n - 1] + 1); /* UTF-8 never has 0xFF bytes */
    return upper;
}

static st_status string_expr(sql_builder *b, st_modifier modifier, const char *text)
{
    if (modifier == ST_MOD_EXACT) {
        sb_add(b, "x.exact = "), sb_text(b, text);
        return ST_OK;
    }
    const char *norm = sb_own(b, st_normalize(text));
    if (modifier == ST_MOD_CONTAINS) {
        sb_add(b, b->dialect->find_text), sb_add(b, "(x.normalized, "), sb_text(b, norm), sb_add(b, ") > 0");
        return ST_OK;
    }
    if (!*norm) {
        sb_add(b, b->dialect->true_literal);
        return ST_OK;
    }
    /* a prefix as a range, so that the index on normalized serves it; the bound is a byte, so compare bytes */
    sb_add(b, "(x.normalized >= "), sb_text(b, norm), sb_add(b, b->dialect->byte_order);
    sb_add(b, " AND x.normalized < "), sb_text(b, sb_own(b, prefix_upper_bound(norm)));
    sb_add(b, b->dialect->byte_order), sb_add(b, ")");
    return ST_OK;
}

static void token_expr(sql_builder *b, const char *system, const char *code)
{
    sb_add(b, "("), sb_add(b, b->dialect->true_literal);
    if (system && !*system)
        sb_add(b, " AND x.system IS NULL");
    else if (system)
        sb_add(b, " AND x.system = "), sb_text(b, system);
    if (code)
        sb_add(b, " AND x.code = "), sb_text(b, code);
    sb_add(b, ")");
}

static st_status reference_expr(sql_builder *b, const st_value *v)
{
    if (v->v.reference.url) {
        sb_add(b, "x.url = "), sb_text(b, v->v.reference.url);
        return ST_OK;
    }
    if (!v->v.reference.id)
        return ST_INVALID;
    sb_add(b, "(x.target_id = "), sb_text(b, v->v.reference.id);
    if (v->v.reference.type)
        sb_add(b, " AND x.target_type = "), sb_text(b, v->v.reference.type);
    sb_add(b, ")");
    return ST_OK;
}

static st_status quantity_expr(sql_builder *b, const st_value *v)
{
    sb_add(b, "(");
    number_expr(b, v->prefix, v->v.number.value, v->v.number.low, v->v.number.high);
    if (v->v.number.system)
        sb_add(b, " AND x.system = "), sb_text(b, v->v.number.system);
    if (v->v.number.code)
        sb_add(b, " AND x.code = "), sb_text(b, v->v.number.code);
    sb_add(b, ")");
    return ST_OK;
}

static st_status value_expr(sql_builder *b, const st_condition *c, const st_value *v)
{
    switch (c->kind) {
    case ST_KIND_STRING: return v->v.string.text ? string_expr(b, c->modifier, v->v.string.text) : ST_INVALID;
    case ST_KIND_TOKEN: token_expr(b, v->v.token.system, v->v.token.code); return ST_OK;
    case ST_KIND_REFERENCE: return reference_expr(b, v);
    case ST_KIND_DATE: date_expr(b, v->prefix, "x.low", "x.high", v->v.date.low_ms, v->v.date.high_ms); return ST_OK;
    case ST_KIND_NUMBER: number_expr(b, v->prefix, v->v.number.value, v->v.number.low, v->v.number.high); return ST_OK;
    case ST_KIND_QUANTITY: return quantity_expr(b, v);
    case ST_KIND_URI:
        if (!v->v.uri.uri)
            return ST_INVALID;
        sb_add(b, "x.uri = "), sb_text(b, v->v.uri.uri);
        return ST_OK;
    }
    return ST_INVALID;
}

static bool modifier_fits(const st_condition *c)
{
    switch (c->modifier) {
    case ST_MOD_NONE:
    case ST_MOD_MISSING: return true;
    case ST_MOD_EXACT:
    case ST_MOD_CONTAINS: return c->kind == ST_KIND_STRING;
    case ST_MOD_NOT: return c->kind == ST_KIND_TOKEN;
    }
    return false;
}

/* "(v1 OR v2 ...)" over the condition's values. */
static st_status values_expr(sql_builder *b, const st_condition *c)
{
    if (c->value_count == 0 || !c->values)
        return ST_INVALID;
    sb_add(b, "(");
    for (size_t i = 0; i < c->value_count; i++) {
        if (i)
            sb_add(b, " OR ");
        st_status s = value_expr(b, c, &c->values[i]);
        if (s != ST_OK)
            return s;
    }
    sb_add(b, ")");
    return ST_OK;
}

/* _id and _lastUpdated live in the resource table itself (alias `res`). */
static st_status builtin_condition(sql_builder *b, const st_condition *c, bool is_id, const char *res)
{
    char id_col[16], time_col[24];
    snprintf(id_col, sizeof id_col, "%s.id = ", res);
    snprintf(time_col, sizeof time_col, "%s.last_updated", res);
    if (c->modifier == ST_MOD_MISSING) {
        sb_add(b, c->missing ? b->dialect->false_literal : b->dialect->true_literal); /* every resource has both */
        return ST_OK;
    }
    if (c->value_count == 0 || !c->values)
        return ST_INVALID;
    if (is_id && c->modifier != ST_MOD_NONE && c->modifier != ST_MOD_NOT)
        return ST_INVALID;
    if (!is_id && c->modifier != ST_MOD_NONE)
        return ST_INVALID;
    sb_add(b, is_id && c->modifier == ST_MOD_NOT ? "NOT (" : "(");
    for (size_t i = 0; i < c->value_count; i++) {
        const st_value *v = &c->values[i];
        if (i)
            sb_add(b, " OR ");
        if (is_id) {
            if (!v->v.token.code)
                return ST_INVALID;
            sb_add(b, id_col), sb_text(b, v->v.token.code);
        } else {
            date_expr(b, v->prefix, time_col, time_col, v->v.date.low_ms, v->v.date.high_ms);
        }
    }
    sb_add(b, ")");
    return ST_OK;
}

/*
 * How well a condition can drive the query: 0 for equality lookups, 1 for
 * string prefixes, 2 for ranges, -1 for what never drives (negations,
 * :missing, :contains, the built-ins in the resource table itself).
 */
static int drive_rank(const st_condition *c)
{
    if (!c->param || c->param[0] == '_' || c->modifier == ST_MOD_NOT || c->modifier == ST_MOD_MISSING ||
        c->modifier == ST_MOD_CONTAINS || c->chain_len)
        return -1;
    for (size_t i = 0; i < c->value_count; i++)
        if (c->values && c->values[i].prefix == ST_NE)
            return -1;
    switch (c->kind) {
    case ST_KIND_TOKEN:
    case ST_KIND_REFERENCE:
    case ST_KIND_URI: return 0;
    case ST_KIND_STRING: return c->modifier == ST_MOD_EXACT ? 0 : 1;
    default: return 2;
    }
}

/* The index of the condition that drives the query, or -1 when none should. */
static long driving_condition(const st_query *q)
{
    long best = -1;
    int best_rank = 3;
    for (size_t i = 0; i < q->condition_count; i++) {
        int rank = drive_rank(&q->conditions[i]);
        if (rank >= 0 && rank < best_rank)
            best = (long)i, best_rank = rank;
    }
    return best;
}

/*
 * A condition over index rows. The driving one becomes "r.rid IN (SELECT
 * x.rid FROM index_<kind> x WHERE ...)", which SQLite runs first, from the
 * value index, visiting only the resources it yields. Every other one
 * becomes a correlated "[NOT] EXISTS (... WHERE x.rid = r.rid ...)": a probe
 * of the (rid, param) index per candidate. (As IN lists they would each be
 * materialised in full, which for "gender=male" is half the table.)
 */
static st_status row_condition(sql_builder *b, const st_query *q, const st_condition *c, bool drives, const char *res)
{
    if (!c->param || (unsigned)c->kind > ST_KIND_URI || !modifier_fits(c))
        return ST_INVALID;
    if (strcmp(c->param, "_id") == 0)
        return builtin_condition(b, c, true, res);
    if (strcmp(c->param, "_lastUpdated") == 0)
        return builtin_condition(b, c, false, res);

    bool negated = c->modifier == ST_MOD_NOT || (c->modifier == ST_MOD_MISSING && c->missing);
    if (drives)
        sb_add(b, "r.rid IN (SELECT x.rid FROM ");
    else
        sb_add(b, negated ? "NOT EXISTS (SELECT 1 FROM " : "EXISTS (SELECT 1 FROM ");
    sb_add(b, INDEX_TABLE[c->kind]);
    if (drives) {
        sb_add(b, " x WHERE ");
    } else {
        char join[48];
        snprintf(join, sizeof join, " x WHERE x.rid = %s.rid AND ", res);
        sb_add(b, join);
    }
    if (drives && q->type)
        sb_add(b, "x.type = "), sb_text(b, q->type), sb_add(b, " AND ");
    sb_add(b, "x.param = "), sb_text(b, c->param);
    if (c->modifier != ST_MOD_MISSING) {
        sb_add(b, " AND ");
        st_status s = values_expr(b, c);
        if (s != ST_OK)
            return s;
    }
    sb_add(b, ")");
    return ST_OK;
}

static void text_list(sql_builder *b, const char *const *texts, size_t count)
{
    sb_add(b, "(");
    for (size_t i = 0; i < count; i++)
        sb_add(b, i ? ", " : ""), sb_text(b, texts[i]);
    sb_add(b, ")");
}

/* " AND (<res> is owned by or addressed to one of orgs)" */
static void visibility_expr(sql_builder *b, const char *const *orgs, size_t count, const char *res)
{
    char text[80];
    snprintf(text, sizeof text, " AND (%s.owner IN ", res);
    sb_add(b, text), text_list(b, orgs, count);
    snprintf(text, sizeof text, " OR EXISTS (SELECT 1 FROM access_tag a WHERE a.rid = %s.rid AND a.tag IN ", res);
    sb_add(b, text), text_list(b, orgs, count), sb_add(b, ")");
    /* what an active Task addressed to them lets them read */
    snprintf(text, sizeof text, " OR EXISTS (SELECT 1 FROM access_grant g WHERE g.rid = %s.rid AND g.tag IN ", res);
    sb_add(b, text), text_list(b, orgs, count), sb_add(b, "))");
}

/* " AND (<res> may be seen by whom v describes)"; nothing when v is NULL. */
static void linked_visibility(sql_builder *b, const st_visibility *v, const char *res)
{
    if (!v)
        return;
    char text[48];
    if (v->type_count) {
        snprintf(text, sizeof text, " AND %s.type IN ", res);
        sb_add(b, text), text_list(b, v->types, v->type_count);
    }
    if (v->shared_type_count) {
        snprintf(text, sizeof text, " AND (%s.type IN ", res);
        sb_add(b, text), text_list(b, v->shared_types, v->shared_type_count);
        if (v->org_count)
            sb_add(b, " OR "), sb_add(b, b->dialect->true_literal), visibility_expr(b, v->orgs, v->org_count, res);
        sb_add(b, ")");
    } else if (v->org_count) {
        visibility_expr(b, v->orgs, v->org_count, res);
    } else {
        sb_add(b, " AND "), sb_add(b, b->dialect->false_literal);
    }
}

/*
 * A chained condition from the resource `res`: one EXISTS per link, each
 * joining index_reference to the resources it reaches (alias c1, c2, ...),
 * which must be current and visible, down to the condition on the last.
 */
static st_status chain_condition(sql_builder *b, const st_query *q, const st_condition *c, size_t depth,
                                 const char *res)
{
    if (depth == c->chain_len)
        return row_condition(b, q, c, false, res);
    const st_link *l = &c->chain[depth];
    if (!l->param || (l->reverse && !l->type))
        return ST_INVALID;
    char at[8], text[200];
    snprintf(at, sizeof at, "c%zu", depth + 1);
    if (!l->reverse) /* the resources res points at */
        snprintf(text, sizeof text,
                 "EXISTS (SELECT 1 FROM index_reference l%zu JOIN resource %s ON %s.type = l%zu.target_type"
                 " AND %s.id = l%zu.target_id WHERE l%zu.rid = %s.rid AND l%zu.param = ",
                 depth + 1, at, at, depth + 1, at, depth + 1, depth + 1, res, depth + 1);
    else /* the resources of l->type pointing at res */
        snprintf(text, sizeof text,
                 "EXISTS (SELECT 1 FROM index_reference l%zu JOIN resource %s ON %s.rid = l%zu.rid"
                 " WHERE l%zu.target_type = %s.type AND l%zu.target_id = %s.id AND l%zu.param = ",
                 depth + 1, at, at, depth + 1, depth + 1, res, depth + 1, res, depth + 1);
    sb_add(b, text), sb_text(b, l->param);
    if (l->type) {
        snprintf(text, sizeof text, " AND l%zu.%s = ", depth + 1, l->reverse ? "type" : "target_type");
        sb_add(b, text), sb_text(b, l->type);
    }
    snprintf(text, sizeof text, " AND %s.deleted = 0", at);
    sb_add(b, text);
    linked_visibility(b, q->linked, at);
    sb_add(b, " AND ");
    st_status s = chain_condition(b, q, c, depth + 1, at);
    sb_add(b, ")");
    return s;
}

static st_status condition_expr(sql_builder *b, const st_query *q, const st_condition *c, bool drives)
{
    if (c->chain_len > 0)
        return c->chain ? chain_condition(b, q, c, 0, "r") : ST_INVALID;
    return row_condition(b, q, c, drives, "r");
}

/* ---- Keyset paging ---- */

/* Is the query in the keyset order (lastUpdated, then id)? *descending: its direction. */
static bool keyset_order(const st_query *q, bool *descending)
{
    *descending = true;
    if (q->sort_count == 0)
        return true;
    if (q->sort_count == 1 && q->sort && q->sort[0].param && !strcmp(q->sort[0].param, "_lastUpdated")) {
        *descending = q->sort[0].descending;
        return true;
    }
    return false;
}

/* r's sort key: its lastUpdated as of the snapshot (NULL when it did not exist then), or now. */
static void key_expr(sql_builder *b, const st_query *q)
{
    if (!q->snapshot) {
        sb_add(b, "r.last_updated");
        return;
    }
    /* unchanged since the snapshot: its own; else the version current then (versions grow with seq,
     * so the (rid, version) index serves) */
    sb_add(b, "(CASE WHEN r.current_seq <= "), sb_int(b, q->snapshot);
    sb_add(b, " THEN r.last_updated ELSE (SELECT k.last_updated FROM resource_version k WHERE k.rid = r.rid"
              " AND k.seq <= ");
    sb_int(b, q->snapshot), sb_add(b, " ORDER BY k.version DESC LIMIT 1) END)");
}

/* The order pages are read in: the display order, reversed for a `before` cursor. */
static bool reading_descending(const st_query *q)
{
    bool descending;
    keyset_order(q, &descending);
    return q->cursor && q->cursor->before ? !descending : descending;
}

/* " AND <key, id> beyond the cursor in the reading order" */
static void cursor_expr(sql_builder *b, const st_query *q)
{
    const char *op = reading_descending(q) ? " < " : " > ";
    sb_add(b, " AND ("), key_expr(b, q), sb_add(b, op), sb_int(b, q->cursor->key_ms);
    sb_add(b, " OR ("), key_expr(b, q), sb_add(b, " = "), sb_int(b, q->cursor->key_ms);
    sb_add(b, " AND r.rid"), sb_add(b, op), sb_int(b, q->cursor->rid), sb_add(b, "))");
}

/* History: each version is visible to its owner and to whom that version was addressed. */
static void version_visibility_expr(sql_builder *b, const char *const *orgs, size_t count)
{
    const sql_dialect *d = b->dialect;
    sb_add(b, " AND (r.owner IN "), text_list(b, orgs, count);
    for (size_t i = 0; i < count; i++) { /* the tags, separated and enclosed by char(31), hold this one */
        sb_add(b, " OR "), sb_add(b, d->find_text), sb_add(b, "("), sb_add(b, d->unit_separator);
        sb_add(b, " || coalesce(v.tags, '') || "), sb_add(b, d->unit_separator), sb_add(b, ", ");
        sb_add(b, d->unit_separator), sb_add(b, " || "), sb_text(b, orgs[i]), sb_add(b, " || ");
        sb_add(b, d->unit_separator), sb_add(b, ") > 0");
    }
    sb_add(b, ")");
}

/* The WHERE clause of a search over "resource r" (without the word WHERE). */
static st_status where_clause(sql_builder *b, const st_query *q)
{
    long driver = driving_condition(q);
    sb_add(b, "r.deleted = 0");
    /* with a driving condition, keep the planner (which may have no statistics) off the type index */
    if (q->type)
        sb_add(b, " AND "), sb_add(b, driver >= 0 ? b->dialect->no_index : ""), sb_add(b, "r.type = "),
            sb_text(b, q->type);
    for (size_t i = 0; i < q->condition_count; i++) {
        sb_add(b, " AND ");
        st_status s = condition_expr(b, q, &q->conditions[i], (long)i == driver);
        if (s != ST_OK)
            return s;
    }
    if (q->visible_to_count)
        visibility_expr(b, q->visible_to, q->visible_to_count, "r");
    if (q->snapshot) /* only what existed at the snapshot */
        sb_add(b, " AND "), key_expr(b, q), sb_add(b, " IS NOT NULL");
    return b->oom ? ST_INTERNAL : ST_OK;
}

static const char *sort_column(st_kind kind, bool descending)
{
    switch (kind) {
    case ST_KIND_STRING: return "normalized";
    case ST_KIND_TOKEN: return "code";
    case ST_KIND_REFERENCE: return "coalesce(target_id, url)";
    case ST_KIND_DATE: return descending ? "high" : "low";
    case ST_KIND_NUMBER:
    case ST_KIND_QUANTITY: return "value";
    case ST_KIND_URI: return "uri";
    }
    return NULL;
}

static st_status order_clause(sql_builder *b, const st_query *q)
{
    bool descending;
    if (keyset_order(q, &descending)) {
        const char *dir = reading_descending(q) ? " DESC" : " ASC";
        sb_add(b, " ORDER BY "), key_expr(b, q), sb_add(b, dir), sb_add(b, ", r.rid"), sb_add(b, dir);
        return ST_OK;
    }
    sb_add(b, " ORDER BY ");
    for (size_t i = 0; i < q->sort_count; i++) {
        const st_sort *s = &q->sort[i];
        const char *dir = s->descending ? " DESC" : " ASC";
        if (!s->param)
            return ST_INVALID;
        if (strcmp(s->param, "_lastUpdated") == 0) {
            sb_add(b, "r.last_updated"), sb_add(b, dir);
        } else if (strcmp(s->param, "_id") == 0) {
            sb_add(b, "r.id"), sb_add(b, dir);
        } else {
            const char *column = (unsigned)s->kind <= ST_KIND_URI ? sort_column(s->kind, s->descending) : NULL;
            if (!column)
                return ST_INVALID;
            /* a resource sorts by its lowest value ascending, its highest descending; none last */
            sb_add(b, s->descending ? "(SELECT max(" : "(SELECT min("), sb_add(b, column), sb_add(b, ") FROM ");
            sb_add(b, INDEX_TABLE[s->kind]), sb_add(b, " WHERE rid = r.rid AND param = "), sb_text(b, s->param);
            sb_add(b, ")"), sb_add(b, dir), sb_add(b, " NULLS LAST");
        }
        sb_add(b, ", ");
    }
    sb_add(b, "r.rid"); /* ties: creation order, so that pages do not overlap */
    return ST_OK;
}

/* ---- Search and history statements ---------------------------------------------------------- */

#define PAGE_COLUMNS "SELECT r.type, r.id, r.version, r.last_updated, v.method, v.json, r.owner, " SELECT_TAGS " "

size_t sql_page_size(const st_query *q)
{
    return q->count ? q->count : LIM(page_size_default);
}

st_status sql_build_search_total(sql_builder *b, const st_query *q)
{
    sb_add(b, "SELECT count(*) FROM resource r WHERE ");
    return where_clause(b, q);
}

/*
 * The (rid, k) of a keyset page at a snapshot, as two index range scans instead of one sort of every
 * candidate's computed key (which a paged stream of thousands paid again on each page):
 *   a: the rows unchanged since the snapshot, whose key is their own lastUpdated, read in that order
 *      from resource_by_time (type, last_updated, rid), from the cursor on;
 *   b: the rows changed since (few, and all of them at or after the earliest change after the snapshot,
 *      so a range of the same index), with their key as of the snapshot;
 * merged in the reading order; `limit` rows at most of each.
 */
static st_status snapshot_page_rows(sql_builder *b, const st_query *q, int64_t limit)
{
    st_query now = *q; /* part a: the key is the row's own, the snapshot test is current_seq */
    now.snapshot = 0;
    bool desc = reading_descending(q);
    const char *dir = desc ? " DESC" : " ASC", *op_eq = desc ? " <= " : " >= ";
    sb_add(b, "SELECT rid, k FROM (SELECT * FROM (SELECT r.rid AS rid, r.last_updated AS k FROM resource r WHERE ");
    st_status s = where_clause(b, &now);
    sb_add(b, " AND r.current_seq <= "), sb_int(b, q->snapshot);
    if (q->cursor) { /* the first term bounds the index range; the rest is cursor_expr's */
        sb_add(b, " AND r.last_updated"), sb_add(b, op_eq), sb_int(b, q->cursor->key_ms);
        cursor_expr(b, &now);
    }
    sb_add(b, " ORDER BY r.last_updated"), sb_add(b, dir), sb_add(b, ", r.rid"), sb_add(b, dir);
    sb_add(b, " LIMIT "), sb_int(b, limit);
    sb_add(b, ") a UNION ALL SELECT * FROM (SELECT r.rid AS rid, "), key_expr(b, q);
    sb_add(b, " AS k FROM resource r WHERE ");
    if (s == ST_OK)
        s = where_clause(b, q);
    sb_add(b, " AND r.current_seq > "), sb_int(b, q->snapshot);
    sb_add(b, " AND r.last_updated >= (SELECT coalesce(min(x.last_updated), 9223372036854775807)"
              " FROM resource_version x WHERE x.seq > ");
    sb_int(b, q->snapshot), sb_add(b, ")");
    if (q->cursor)
        cursor_expr(b, q);
    sb_add(b, " ORDER BY k"), sb_add(b, dir), sb_add(b, ", rid"), sb_add(b, dir);
    sb_add(b, " LIMIT "), sb_int(b, limit);
    sb_add(b, ") b) u ORDER BY k"), sb_add(b, dir), sb_add(b, ", rid"), sb_add(b, dir);
    return s;
}

st_status sql_build_search_page(sql_builder *b, const st_query *q)
{
    bool descending, keyset = keyset_order(q, &descending);
    if (q->cursor && !keyset)
        return ST_INVALID;
    /* The page's rows are chosen and ordered first by (rid, key) alone, and only they are joined to their
     * JSON: a sort over a computed key (the snapshot's) would otherwise carry every candidate's JSON
     * through the sorter, and a page read in chunks would pay for that once per chunk. */
    st_status s = ST_OK;
    int64_t limit = (int64_t)sql_page_size(q) + keyset;
    if (keyset && q->snapshot) {
        sb_template(b, PAGE_COLUMNS ", p.k, p.rid FROM (");
        s = snapshot_page_rows(b, q, limit + (int64_t)q->offset);
    } else {
        sb_template(b, PAGE_COLUMNS ", p.k, p.rid FROM (SELECT r.rid AS rid, "), key_expr(b, q);
        sb_add(b, " AS k FROM resource r WHERE ");
        s = where_clause(b, q);
        if (s == ST_OK && q->cursor)
            cursor_expr(b, q);
        if (s == ST_OK)
            s = order_clause(b, q);
    }
    if (s == ST_OK) {
        sb_add(b, " LIMIT "), sb_int(b, limit);
        sb_add(b, " OFFSET "), sb_int(b, (int64_t)q->offset);
        sb_add(b, ") p JOIN resource r ON r.rid = p.rid JOIN resource_version v ON v.seq = r.current_seq");
        if (!keyset) /* keyset pages are put in order by finish_keyset_page: a sort here would carry the JSON */
            s = order_clause(b, q); /* the same expressions over the page's rows only */
    }
    return s == ST_OK && b->oom ? ST_INTERNAL : s;
}

st_status sql_build_conditional_create(sql_builder *b, const st_query *query)
{
    st_query q = *query;
    q.count = 2, q.offset = 0, q.want_total = false, q.sort = NULL, q.sort_count = 0;
    sb_add(b, "SELECT r.id, r.version, r.last_updated FROM resource r WHERE ");
    st_status s = where_clause(b, &q);
    sb_add(b, " LIMIT 2");
    return s == ST_OK && b->oom ? ST_INTERNAL : s;
}

static void history_where(sql_builder *b, const st_history_query *q, int64_t rid, int64_t upto)
{
    sb_add(b, " WHERE v.seq <= "), sb_int(b, upto);
    if (rid)
        sb_add(b, " AND v.rid = "), sb_int(b, rid);
    else if (q->type)
        sb_add(b, " AND v.type = "), sb_text(b, q->type);
    if (q->since_ms != INT64_MIN)
        sb_add(b, " AND v.last_updated >= "), sb_int(b, q->since_ms);
    if (q->at) {
        /* a version is current from its lastUpdated until the next one's (as of the snapshot): the two spans meet */
        sb_add(b, " AND v.last_updated <= "), sb_int(b, q->at_hi_ms);
        sb_add(b, " AND coalesce((SELECT min(n.last_updated) FROM resource_version n WHERE n.rid = v.rid"
                  " AND n.version > v.version AND n.seq <= "),
            sb_int(b, upto), sb_add(b, "), "), sb_int(b, INT64_MAX), sb_add(b, ") > "), sb_int(b, q->at_lo_ms);
    }
    if (q->visible_to_count)
        version_visibility_expr(b, q->visible_to, q->visible_to_count);
}

st_status sql_build_history_total(sql_builder *b, const st_history_query *q, int64_t rid, int64_t upto)
{
    sb_add(b, "SELECT count(*) FROM resource_version v JOIN resource r ON r.rid = v.rid");
    history_where(b, q, rid, upto);
    return b->oom ? ST_INTERNAL : ST_OK;
}

st_status sql_build_history_page(sql_builder *b, const st_history_query *q, int64_t rid, int64_t upto)
{
    sb_add(b, "SELECT v.type, v.id, v.version, v.last_updated, v.method, v.json, r.owner, v.tags"
              " FROM resource_version v JOIN resource r ON r.rid = v.rid");
    history_where(b, q, rid, upto);
    sb_add(b, " ORDER BY v.seq DESC LIMIT "), sb_int(b, (int64_t)q->count);
    sb_add(b, " OFFSET "), sb_int(b, (int64_t)q->offset);
    return b->oom ? ST_INTERNAL : ST_OK;
}

/* ---- Running a search ------------------------------------------------------------------------ */

void sql_row_keys_free(sql_row_keys *k)
{
    free(k->keys);
    free(k->rids);
    memset(k, 0, sizeof *k);
}

bool sql_row_keys_push(sql_row_keys *k, int64_t key, int64_t rid)
{
    size_t cap = k->cap; /* both arrays grow alike: one capacity */
    if (!fa_reserve(&k->keys, &cap, k->count + 1, sizeof *k->keys) ||
        !fa_reserve(&k->rids, &k->cap, k->count + 1, sizeof *k->rids))
        return false;
    k->keys[k->count] = key;
    k->rids[k->count++] = rid;
    return true;
}

static st_status search_total(const sql_reader *r, const sql_dialect *d, const st_query *q, int64_t *total,
                              st_error *err)
{
    sql_builder b;
    sql_builder_init(&b, d);
    st_status s = sql_build_search_total(&b, q);
    if (s == ST_OK)
        s = r->scalar(r->conn, &b, total, err);
    sql_builder_free(&b);
    return s;
}

/*
 * A keyset page was read with one row too many (to know whether another
 * follows) and, for a `before` cursor, in reverse: trim and turn it into
 * display order, and note the first and last keys.
 */
typedef struct keyed_row {
    int64_t key, rid;
    st_resource item;
} keyed_row;

static int by_key_rid(const void *a, const void *b)
{
    const keyed_row *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->rid < y->rid ? -1 : x->rid > y->rid;
}

/* The rows, as the join returned them, into (key, rid) order, reversed when reading descending. */
static void order_keyset_rows(const st_query *q, st_list *out, sql_row_keys *k)
{
    size_t n = out->count < k->count ? out->count : k->count;
    keyed_row *rows = n > 1 ? malloc(n * sizeof *rows) : NULL;
    if (!rows)
        return; /* one row (or out of memory, and only then out of order) */
    for (size_t i = 0; i < n; i++)
        rows[i] = (keyed_row){k->keys[i], k->rids[i], out->items[i]};
    qsort(rows, n, sizeof *rows, by_key_rid);
    bool desc = reading_descending(q);
    for (size_t i = 0; i < n; i++) {
        const keyed_row *r = &rows[desc ? n - 1 - i : i];
        k->keys[i] = r->key, k->rids[i] = r->rid, out->items[i] = r->item;
    }
    free(rows);
}

static void finish_keyset_page(const st_query *q, st_list *out, sql_row_keys *k)
{
    order_keyset_rows(q, out, k);
    size_t want = sql_page_size(q);
    out->more = out->count > want;
    while (out->count > want)
        st_resource_free(&out->items[--out->count]);
    k->count = out->count;
    const int64_t *keys = k->keys;
    for (size_t i = 0; i < out->count; i++) /* before reversing: the items carry their keys along */
        out->items[i].key_ms = keys[i], out->items[i].rid = k->rids[i];
    bool reversed = q->cursor && q->cursor->before;
    for (size_t i = 0; reversed && i < out->count / 2; i++) {
        st_resource t = out->items[i];
        out->items[i] = out->items[out->count - 1 - i];
        out->items[out->count - 1 - i] = t;
    }
    if (out->count) {
        size_t first = reversed ? out->count - 1 : 0, last = reversed ? 0 : out->count - 1;
        out->first_key_ms = keys[first], out->last_key_ms = keys[last];
        out->first_rid = k->rids[first], out->last_rid = k->rids[last];
    }
}

/* The page; the rids of its matches in *rows (for includes). */
static st_status search_page(const sql_reader *r, const sql_dialect *d, const st_query *q, st_list *out,
                             sql_row_keys *rows, st_error *err)
{
    bool descending, keyset = keyset_order(q, &descending);
    sql_builder b;
    sql_builder_init(&b, d);
    st_status s = sql_build_search_page(&b, q);
    size_t capacity = 0;
    if (s == ST_OK)
        s = r->collect(r->conn, &b, out, &capacity, rows, err);
    if (s == ST_OK && keyset)
        finish_keyset_page(q, out, rows);
    sql_builder_free(&b);
    return s;
}

/* ---- Includes ---- */

static void rid_list(sql_builder *b, const int64_t *rids, size_t n)
{
    sb_add(b, "(");
    for (size_t i = 0; i < n; i++)
        sb_add(b, i ? ", " : ""), sb_int(b, rids[i]);
    sb_add(b, ")");
}

/*
 * One include over the resources `from` (rids): appends the resources it
 * reaches that are not in `seen` to inc_list (their rids to seen), at most
 * `room` of them (one more is read to know whether there were).
 */
static st_status include_once(const sql_reader *r, const sql_dialect *d, const st_query *q, const st_include *inc,
                              const int64_t *from, size_t nfrom, sql_row_keys *seen, size_t room, st_list *inc_list,
                              size_t *capacity, bool *truncated, st_error *err)
{
    if (inc->reverse && (!inc->type || !inc->param))
        return ST_INVALID;
    sql_builder b;
    sql_builder_init(&b, d);
    sb_template(&b, PAGE_COLUMNS ", 0, r.rid FROM resource r JOIN resource_version v ON v.seq = r.current_seq"
                                 " WHERE r.deleted = 0");
    linked_visibility(&b, q->linked, "r");
    sb_add(&b, inc->reverse ? " AND r.rid IN (SELECT l.rid" : " AND r.rid IN (SELECT t.rid");
    sb_add(&b, " FROM index_reference l JOIN resource t ON t.type = l.target_type AND t.id = l.target_id WHERE ");
    sb_add(&b, inc->reverse ? "t.rid IN " : "l.rid IN "), rid_list(&b, from, nfrom);
    if (inc->type)
        sb_add(&b, " AND l.type = "), sb_text(&b, inc->type);
    if (inc->param)
        sb_add(&b, " AND l.param = "), sb_text(&b, inc->param);
    if (inc->target_type)
        sb_add(&b, " AND l.target_type = "), sb_text(&b, inc->target_type);
    sb_add(&b, ") AND r.rid NOT IN "), rid_list(&b, seen->rids, seen->count);
    sb_add(&b, " ORDER BY r.rid LIMIT "), sb_int(&b, (int64_t)room + 1);
    st_status s = b.oom ? ST_INTERNAL : ST_OK;
    size_t before = inc_list->count;
    if (s == ST_OK)
        s = r->collect(r->conn, &b, inc_list, capacity, seen, err);
    if (s == ST_OK && inc_list->count - before > room) {
        *truncated = true;
        st_resource_free(&inc_list->items[--inc_list->count]);
        seen->count--;
    }
    sql_builder_free(&b);
    return s;
}

/* The includes of the page whose match rids are in `rows`, round by round (:iterate), into out->included. */
static st_status search_includes(const sql_reader *r, const sql_dialect *d, const st_query *q, st_list *out,
                                 sql_row_keys *rows, st_error *err)
{
    size_t max = q->max_included ? q->max_included : LIM(included_max), capacity = 0;
    st_list inc = {0};
    st_status s = ST_OK;
    size_t frontier = 0, end = rows->count; /* rows->rids[frontier..end): what the round starts from */
    for (int round = 0; s == ST_OK && round < LIM(include_rounds) && frontier < end; round++) {
        for (size_t i = 0; s == ST_OK && i < q->include_count && !out->included_truncated; i++) {
            const st_include *in = &q->includes[i];
            if (round == 0 || in->iterate)
                s = include_once(r, d, q, in, rows->rids + frontier, end - frontier, rows, max - inc.count, &inc,
                                 &capacity, &out->included_truncated, err);
        }
        frontier = end, end = rows->count;
    }
    out->included = inc.items;
    out->included_count = inc.count;
    return s;
}

st_status sql_search(const sql_reader *r, const sql_dialect *d, const st_query *q, st_list *out, st_error *err)
{
    st_status s = ST_OK;
    if (q->want_total)
        s = search_total(r, d, q, &out->total, err);
    sql_row_keys rows = {0};
    if (s == ST_OK && (q->count || !q->want_total))
        s = search_page(r, d, q, out, &rows, err);
    if (s == ST_OK && q->include_count && out->count)
        s = search_includes(r, d, q, out, &rows, err);
    sql_row_keys_free(&rows);
    if (s == ST_INVALID)
        st__error(err, "unsupported search (modifier, kind or value)");
    return s;
}

st_status sql_history(const sql_reader *r, const sql_dialect *d, const st_history_query *q, int64_t rid, st_list *out,
                      st_error *err)
{
    sql_builder total, page;
    sql_builder_init(&total, d);
    sql_builder_init(&page, d);
    st_status s = sql_build_history_total(&total, q, rid, out->snapshot);
    if (s == ST_OK)
        s = sql_build_history_page(&page, q, rid, out->snapshot);
    if (s == ST_OK)
        s = r->scalar(r->conn, &total, &out->total, err);
    size_t capacity = 0;
    if (s == ST_OK && q->count) /* count 0: the total only */
        s = r->collect(r->conn, &page, out, &capacity, NULL, err);
    sql_builder_free(&total);
    sql_builder_free(&page);
    return s;
}

/* ---- Writing ---------------------------------------------------------------------------------- */

bool sql_index_row(const st_index_row *row, int64_t rid, const char *type, sql_fixed *which,
                   sql_value values[SQL_INDEX_VALUES_MAX], size_t *count, char **owned)
{
    static const sql_fixed insert_of[] = {
        [ST_KIND_STRING] = SQL_INSERT_STRING,
        [ST_KIND_TOKEN] = SQL_INSERT_TOKEN,
        [ST_KIND_REFERENCE] = SQL_INSERT_REFERENCE,
        [ST_KIND_DATE] = SQL_INSERT_DATE,
        [ST_KIND_NUMBER] = SQL_INSERT_NUMBER,
        [ST_KIND_QUANTITY] = SQL_INSERT_NUMBER,
        [ST_KIND_URI] = SQL_INSERT_URI,
    };
    *owned = NULL;
    if (!row->param || (unsigned)row->kind > ST_KIND_URI)
        return false;
    *which = insert_of[row->kind];
    size_t n = 0;
    values[n++] = sql_int(rid);
    values[n++] = sql_text(type);
    values[n++] = sql_text(row->param);
    switch (row->kind) {
    case ST_KIND_STRING: {
        const char *text = row->v.string.text ? row->v.string.text : "";
        if (!(*owned = st_normalize(text)))
            return false;
        values[n++] = sql_text(*owned);
        values[n++] = sql_text(text);
        break;
    }
    case ST_KIND_TOKEN:
        values[n++] = sql_text_or_null(row->v.token.system);
        values[n++] = sql_text_or_null(row->v.token.code);
        break;
    case ST_KIND_REFERENCE:
        values[n++] = sql_text_or_null(row->v.reference.type);
        values[n++] = sql_text_or_null(row->v.reference.id);
        values[n++] = sql_text_or_null(row->v.reference.url);
        break;
    case ST_KIND_DATE:
        values[n++] = sql_int(row->v.date.low_ms);
        values[n++] = sql_int(row->v.date.high_ms);
        break;
    case ST_KIND_NUMBER:
    case ST_KIND_QUANTITY:
        values[n++] = (sql_value){.kind = SQL_REAL, .real = row->v.number.value};
        values[n++] = sql_text_or_null(row->v.number.system);
        values[n++] = sql_text_or_null(row->v.number.code);
        break;
    case ST_KIND_URI: values[n++] = sql_text(row->v.uri.uri ? row->v.uri.uri : ""); break;
    }
    values[n++] = sql_int(row->personal);
    *count = n;
    return true;
}

char *sql_join_tags(const char *const *tags, size_t count)
{
    size_t len = 1;
    for (size_t i = 0; i < count; i++)
        len += strlen(tags[i]) + 1;
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        if (i)
            *p++ = ST__TAG_SEPARATOR;
        size_t n = strlen(tags[i]);
        memcpy(p, tags[i], n);
        p += n;
    }
    *p = '\0';
    return out;
}
