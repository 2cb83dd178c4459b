/*
 * tests/test_cli.c — the fhirgw binary as a user runs it: `help`,
 * `validate` in text and ndjson form, directory walking, exit statuses
 * (0 clean, 1 errors, 2 usage or I/O), and `config`: every limit of the
 * limits table printed, the config reader's refusals, deploy/fhirgw.conf;
 * `check`: the compliance report as Parameters and text, NDJSON bulk, exit statuses.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gateway/util/limits.h"

static char tmpdir[256];

static void write_file(const char *name, const char *content)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(content, f);
    fclose(f);
}

/* The folders and files of the backup and restore tests, by their names under tmpdir. */
static void make_dir(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    cr_assert_eq(mkdir(path, 0700), 0, "%s", path);
}

static bool exists(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    return access(path, F_OK) == 0;
}

/* The file's text (at most size - 1 bytes) into out; false when it cannot be opened. */
static bool read_text(const char *name, char *out, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    out[fread(out, 1, size - 1, f)] = '\0';
    fclose(f);
    return true;
}

/* No entry of the folder (under tmpdir; "" for tmpdir itself) has `part` in its name. */
static void expect_no_entry_with(const char *folder, const char *part)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, folder);
    DIR *dir = opendir(path);
    cr_assert_not_null(dir, "%s", path);
    for (struct dirent *e; (e = readdir(dir));)
        cr_expect_null(strstr(e->d_name, part), "%s/%s", path, e->d_name);
    closedir(dir);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fhirgw-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    char sub[512];
    snprintf(sub, sizeof sub, "%s/sub", tmpdir);
    mkdir(sub, 0700);
    write_file("good.json",
               "{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":"
               "\"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\">A patient</div>\"},\"gender\":\"female\"}");
    write_file("sub/bad.json", "{\"resourceType\":\"Patient\",\"gender\":\"mal\"}");
    write_file("sub/broken.json", "{\"resourceType\":\"Patient\",\n\"gender\":}");
    write_file("sub/notes.txt", "not JSON, not walked");
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

/* Run `fhirgw ARGS` in tmpdir; returns the exit status, output in *out (malloc'd). */
static int run(const char *args, char **out)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>&1", tmpdir, FHIRGW_BIN, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 1024)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    int status = pclose(p);
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TestSuite(cli, .init = setup, .fini = teardown);

Test(cli, help_lists_commands)
{
    char *out;
    cr_expect_eq(run("help", &out), 0);
    cr_expect_not_null(strstr(out, "validate"), "%s", out);
    free(out);
    cr_expect_eq(run("frobnicate", &out), 2);
    free(out);
}

Test(cli, clean_file_exits_zero)
{
    char *out;
    cr_expect_eq(run("validate good.json", &out), 0);
    cr_expect_not_null(strstr(out, "good.json: OK"), "%s", out);
    free(out);
}

Test(cli, errors_exit_one_with_locations)
{
    char *out;
    cr_expect_eq(run("validate sub/bad.json", &out), 1);
    cr_expect_not_null(strstr(out, "Patient.gender"), "%s", out);
    cr_expect_not_null(strstr(out, "code-invalid"), "%s", out);
    free(out);
    cr_expect_eq(run("validate sub/broken.json", &out), 1);
    cr_expect_not_null(strstr(out, "line 2, col 10"), "%s", out);
    free(out);
}

Test(cli, usage_and_io_problems_exit_two)
{
    char *out;
    cr_expect_eq(run("validate", &out), 2);
    free(out);
    cr_expect_eq(run("validate --format xml good.json", &out), 2);
    free(out);
    cr_expect_eq(run("validate --bogus good.json", &out), 2);
    free(out);
    cr_expect_eq(run("validate missing.json", &out), 2);
    cr_expect_not_null(strstr(out, "missing.json"), "%s", out);
    free(out);
}

Test(cli, ndjson_walks_directories)
{
    char *out;
    cr_expect_eq(run("validate --format ndjson .", &out), 1);
    int lines = 0, with_errors = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_object *o = json_tokener_parse(line);
        cr_assert_not_null(o, "not JSON: %s", line);
        json_object *file, *errors, *warnings, *outcome;
        cr_assert(json_object_object_get_ex(o, "file", &file));
        cr_assert(json_object_object_get_ex(o, "errors", &errors));
        cr_assert(json_object_object_get_ex(o, "warnings", &warnings));
        cr_assert(json_object_object_get_ex(o, "outcome", &outcome));
        cr_expect_str_eq(json_object_get_string(json_object_object_get(outcome, "resourceType")), "OperationOutcome");
        with_errors += json_object_get_int(errors) > 0;
        lines++;
        json_object_put(o);
    }
    cr_expect_eq(lines, 3, "good.json, sub/bad.json, sub/broken.json; notes.txt is not walked");
    cr_expect_eq(with_errors, 2);
    free(out);
}

Test(cli, quiet_prints_only_problems)
{
    char *out;
    cr_expect_eq(run("validate --quiet .", &out), 1);
    cr_expect_null(strstr(out, "good.json"), "%s", out);
    cr_expect_not_null(strstr(out, "bad.json"), "%s", out);
    free(out);
}

Test(cli, profiles_from_a_conformance_folder)
{
    char *out;
    write_file("org.json", "{\"resourceType\":\"Organization\",\"name\":\"X\",\"identifier\":[{\"system\":"
                           "\"http://fhir.nl/fhir/NamingSystem/agb-z\",\"value\":\"1\"}]}");
    const char *profile = "http://example.org/fhirgw/test/StructureDefinition/nl-organization";
    char args[1024];
    snprintf(args, sizeof args, "validate --conformance '%s/profiles' --profile %s org.json", TESTS_DIR, profile);
    cr_expect_eq(run(args, &out), 1);
    cr_expect_not_null(strstr(out, "slice 'ura'"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "validate --conformance '%s/profiles' good.json", TESTS_DIR);
    cr_expect_eq(run(args, &out), 0, "no profile named: the core rules only");
    free(out);
    snprintf(args, sizeof args, "validate --profile %s org.json", profile);
    cr_expect_eq(run(args, &out), 2, "a profile without a folder to load it from");
    free(out);
    snprintf(args, sizeof args, "validate --conformance '%s/profiles' --profile http://example.org/none org.json",
             TESTS_DIR);
    cr_expect_eq(run(args, &out), 2, "an unknown profile");
    cr_expect_not_null(strstr(out, "not in the conformance folders"), "%s", out);
    free(out);
}

/* ---- fhirgw config ---------------------------------------------------------------------------------- */

Test(cli, config_prints_every_limit_with_its_sentence)
{
    char *out;
    cr_assert_eq(run("config", &out), 0, "%s", out);
    for (size_t i = 0; i < LIM_COUNT; i++) {
        const lim_row *row = &lim_table[i];
        char line[128];
        /* settable: a config line; fixed: a comment saying so */
        if (row->settable)
            snprintf(line, sizeof line, "\n%s ", row->name);
        else
            snprintf(line, sizeof line, "\n#   %s ", row->name);
        char *at = strstr(out, line);
        cr_expect_not_null(at, "%s is not printed as %s", row->name, row->settable ? "a setting" : "a comment");
        if (at && !row->settable)
            cr_expect_not_null(strstr(at, "(fixed: compiled in, not a setting)"), "%s", row->name);
        char first[32];
        snprintf(first, sizeof first, "%.24s", row->doc);
        cr_expect_not_null(strstr(out, first), "the sentence of %s", row->name);
    }
    free(out);
}

/* Write content as test.conf and run `fhirgw config` on it; the exit status, output in *out. */
static int config_file(const char *content, char **out)
{
    write_file("test.conf", content);
    return run("config test.conf", out);
}

Test(cli, config_refuses_what_it_cannot_take_whole)
{
    char *out;
    cr_expect_eq(config_file("request_id_max 10\n", &out), 2);
    cr_expect_not_null(strstr(out, "test.conf:1: request_id_max is fixed at 64"), "%s", out);
    free(out);
    cr_expect_eq(config_file("\nmax_connections 0\n", &out), 2, "below the row's minimum");
    cr_expect_not_null(strstr(out, "test.conf:2: max_connections: 0 is outside 1..4294967295"), "%s", out);
    free(out);
    cr_expect_eq(config_file("request_timeout_ms 5000000000\n", &out), 2, "would not fit the server's field");
    free(out);
    cr_expect_eq(config_file("max_body_bytes 16x\n", &out), 2);
    cr_expect_not_null(strstr(out, "is not a size"), "%s", out);
    free(out);
    cr_expect_eq(config_file("referential_integrity 2\n", &out), 2, "a switch is 0 or 1");
    free(out);
    cr_expect_eq(config_file("max_bdy_bytes 1m\n", &out), 2);
    cr_expect_not_null(strstr(out, "unknown setting 'max_bdy_bytes'"), "%s", out);
    free(out);

    /* a line longer than config_line_max is refused, not split into two */
    size_t len = (size_t)LIM(config_line_max) + 10;
    char *line = malloc(len + 32);
    snprintf(line, len + 32, "# %*s\nworkers 2\n", (int)len, "x");
    cr_expect_eq(config_file(line, &out), 2);
    cr_expect_not_null(strstr(out, "test.conf:1: line longer than"), "%s", out);
    free(out);
    free(line);
    /* a value longer than config_value_max likewise */
    line = malloc(2048);
    snprintf(line, 2048, "store_path /%0*d\n", LIM(config_value_max) + 1, 0);
    cr_expect_eq(config_file(line, &out), 2);
    cr_expect_not_null(strstr(out, "value longer than"), "%s", out);
    free(out);
    free(line);
}

Test(cli, config_reads_units_and_comments)
{
    char *out;
    cr_assert_eq(config_file("# a comment\nstore_path /data/#1/fhirgw.db   # where it lives\n"
                             "idle_timeout_ms 2m\nstore_batch_wait_us 2ms\nmax_body_bytes 1048576\n",
                             &out),
                 0, "%s", out);
    cr_expect_not_null(strstr(out, "\nstore_path /data/#1/fhirgw.db\n"), "a # inside a value is kept: %s", out);
    cr_expect_not_null(strstr(out, "\nidle_timeout_ms 120s\n"), "%s", out);
    cr_expect_not_null(strstr(out, "\nstore_batch_wait_us 2000\n"), "%s", out);
    cr_expect_not_null(strstr(out, "\nmax_body_bytes 1m\n"), "%s", out);
    free(out);
}

/* deploy/fhirgw.conf is `fhirgw config` output: it loads, and printing it again gives it back. */
Test(cli, deploy_config_is_config_output)
{
    char path[512], args[600];
    snprintf(path, sizeof path, "%s/../deploy/fhirgw.conf", TESTS_DIR);
    snprintf(args, sizeof args, "config '%s'", path);
    char *out;
    cr_assert_eq(run(args, &out), 0, "%s", out);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char *text = calloc(1, 1 << 20);
    size_t n = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *generated = strstr(text, "# fhirgw configuration:");
    cr_assert_not_null(generated, "the file holds the generated text");
    cr_expect_str_eq(generated, out,
                     "deploy/fhirgw.conf is stale: regenerate it with `fhirgw config deploy/fhirgw.conf`");
    cr_expect_not_null(strstr(out, "\nlisten 0.0.0.0:443\n"), "the production tuning is kept");
    free(text);
    free(out);
}

/* ---- fhirgw map ------------------------------------------------------------ */

#define MAPS TESTS_DIR "/../mappings/maps/2026"
#define GUIDE                                                                                                          \
    "--conformance " TESTS_DIR "/../ig/profiles --conformance " TESTS_DIR "/../ig/extensions --conformance " TESTS_DIR \
    "/../ig/terminology --conformance " TESTS_DIR "/../ig/models"

static void write_stay(void)
{
    write_file("key.hex", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
    write_file("stay.json",
               "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":["
               "{\"fullUrl\":\"https://fhirgw.nl/fhir/Encounter/s\",\"resource\":{\"resourceType\":\"Encounter\","
               "\"status\":\"finished\",\"class\":{\"code\":\"IMP\"},\"type\":[{\"coding\":[{\"system\":"
               "\"https://fhirgw.nl/fhir/CodeSystem/care-kind\",\"code\":\"grz-cva\"}]}],"
               "\"subject\":{\"reference\":\"Patient/p\"},\"period\":{\"start\":\"2026-01-01\"},"
               "\"serviceProvider\":{\"reference\":\"Organization/ura-90000302\"}}},"
               "{\"fullUrl\":\"https://fhirgw.nl/fhir/Patient/p\",\"resource\":{\"resourceType\":\"Patient\","
               "\"id\":\"p\",\"identifier\":[{\"system\":\"http://fhir.nl/fhir/NamingSystem/bsn\",\"value\":"
               "\"999990081\"}]}}]}");
}

Test(cli, map_runs_validates_and_lists_unmapped)
{
    write_stay();
    char *out;
    cr_expect_eq(run("map --map " MAPS "/encounter-to-stay.map " GUIDE " --key-file key.hex --unmapped stay.json",
                     &out),
                 0, "%s", out);
    cr_expect_not_null(strstr(out, "\"resourceType\": \"InsurerStay\""), "%s", out);
    cr_expect_not_null(strstr(out, "\"variant\": \"PR-GRZ-CVA\""), "%s", out);
    cr_expect_not_null(strstr(out, "\"patientPseudonym\": \""), "%s", out);
    cr_expect_null(strstr(out, "999990081"), "the BSN reached the output: %s", out);
    cr_expect_not_null(strstr(out, "unmapped: Encounter.status"), "%s", out);
    free(out);
    /* without a key, pseudonym() is unknown: an unusable map, and the message says what to give */
    cr_expect_eq(run("map --map " MAPS "/encounter-to-stay.map " GUIDE " stay.json", &out), 2);
    cr_expect_not_null(strstr(out, "pseudonym() needs a key"), "%s", out);
    free(out);
}

Test(cli, map_compile_output_reparses)
{
    write_stay();
    char *out;
    cr_assert_eq(run("map --compile " MAPS "/encounter-to-stay.map", &out), 0, "%s", out);
    cr_expect_not_null(strstr(out, "\"resourceType\": \"StructureMap\""), "%s", out);
    write_file("compiled.json", out);
    free(out);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "map --map compiled.json --conceptmaps %s/conceptmaps %s --key-file key.hex stay.json",
             MAPS, GUIDE);
    cr_expect_eq(run(cmd, &out), 0, "%s", out);
    cr_expect_not_null(strstr(out, "\"careKind\": \"PR-GRZ\""), "%s", out);
    free(out);
}

Test(cli, map_bad_input_exit_codes)
{
    write_stay();
    char *out;
    write_file("broken.map", "map \"u\" = \"n\"\ngroup main(source src : Encounter, target tgt : Encounter) {\n"
                             "  src.status as s -> tgt.status = s\n}\n");
    cr_expect_eq(run("map --map broken.map " GUIDE " stay.json", &out), 2);
    cr_expect_not_null(strstr(out, "broken.map:4:1:"), "%s", out);
    free(out);
    /* the map runs, but the record misses required fields: 1 */
    write_file("thin.map", "map \"u\" = \"n\"\n"
                           "uses \"https://fhirgw.nl/fhir/StructureDefinition/insurer-stay\" alias S as target\n"
                           "group main(source src : Encounter, target tgt : S) {\n"
                           "  src.period as p then { p.start as s -> tgt.admission = s \"a\"; } \"period\";\n}\n");
    cr_expect_eq(run("map --map thin.map " GUIDE " stay.json", &out), 1, "%s", out);
    cr_expect_not_null(strstr(out, "InsurerStay.provider"), "%s", out);
    free(out);
    /* a source the map does not take: 2, nothing printed as a result */
    write_file("contract.json", "{\"resourceType\":\"Contract\",\"status\":\"executed\"}");
    cr_expect_eq(run("map --map " MAPS "/encounter-to-stay.map " GUIDE " --key-file key.hex contract.json", &out), 2);
    cr_expect_not_null(strstr(out, "the source is a Contract"), "%s", out);
    cr_expect_null(strstr(out, "\"resourceType\": \"InsurerStay\""), "%s", out);
    free(out);
}

/* ---- fhirgw check (issue #12): the rule pack over files ----------------------------------- */

#define RULES_DIR TESTS_DIR "/rules"

Test(cli, check_prints_the_report_and_exits_by_status)
{
    char *out;
    cr_expect_eq(run("check --date 2026-01-15 " RULES_DIR "/gzsp-plan.json", &out), 0, "%s", out);
    cr_expect_not_null(strstr(out, "\"valueCode\":\"compliant\""), "%s", out);
    cr_expect_not_null(strstr(out, "\"valueString\":\"2026.1.0\""), "%s", out);
    free(out);
    /* six months after the plan's start and a day more: GZSP-EVAL */
    cr_expect_eq(run("check --date 2026-03-02 --format text " RULES_DIR "/gzsp-plan.json", &out), 1, "%s", out);
    cr_expect_not_null(strstr(out, "CarePlan/cp-gzsp-kwetsbaar-1: NOT COMPLIANT"), "%s", out);
    cr_expect_not_null(strstr(out, "GZSP-EVAL (ZN §6, §7)"), "%s", out);
    cr_expect_not_null(strstr(out, "at CarePlan.period.start"), "%s", out);
    free(out);
}

Test(cli, check_reads_ndjson_in_bulk)
{
    char *out;
    cr_expect_eq(run("check --date 2026-02-01 " RULES_DIR "/gzsp-set.ndjson", &out), 1, "%s", out);
    size_t lines = 0, non_compliant = 0;
    for (char *l = out; (l = strstr(l, "{\"resourceType\":\"Parameters\"")); l++)
        lines++;
    for (char *l = out; (l = strstr(l, "\"valueCode\":\"non-compliant\"")); l++)
        non_compliant++;
    cr_expect_eq(lines, 9, "%s", out);
    cr_expect_eq(non_compliant, 4, "%s", out);
    cr_expect_not_null(strstr(out, "\"code\":\"GZSP-WLZ\""), "%s", out);
    free(out);
}

Test(cli, check_refuses_unusable_input)
{
    char *out;
    cr_expect_eq(run("check --date 2026-02-01 sub/broken.json", &out), 2, "%s", out);
    cr_expect_not_null(strstr(out, "invalid JSON"), "%s", out);
    free(out);
    cr_expect_eq(run("check --date 2026-02-01 good.json", &out), 2, "%s", out); /* a Patient: nothing to check */
    cr_expect_not_null(strstr(out, "no CarePlan, Encounter or Organization"), "%s", out);
    free(out);
    cr_expect_eq(run("check --date 2026-13-01 good.json", &out), 2, "%s", out);
    free(out);
    cr_expect_eq(run("check --date 2031-01-01 " RULES_DIR "/gzsp-plan.json", &out), 2, "%s", out);
    cr_expect_not_null(strstr(out, "no rule pack for contract year 2031"), "%s", out);
    free(out);
}

Test(cli, backup_refuses_usage_errors_and_a_store_that_is_not_there)
{
    char *out;
    cr_expect_eq(run("backup", &out), 2);
    cr_expect_not_null(strstr(out, "usage: fhirgw backup"), "%s", out);
    free(out);
    cr_expect_eq(run("backup --dev . --into b", &out), 2);
    free(out);
    cr_expect_eq(run("backup --config missing.conf --to b", &out), 2);
    cr_expect_not_null(strstr(out, "missing.conf"), "%s", out);
    free(out);
    /* a folder without a database: no empty copy is made of nothing */
    cr_expect_eq(run("backup --dev sub --to b", &out), 2);
    cr_expect_not_null(strstr(out, "fhirgw.db"), "%s", out);
    free(out);
    cr_expect_not(exists("b/audit-checkpoints"), "a failed backup leaves nothing half-made behind");
    cr_expect_not(exists("b/fhirgw.db"), "a failed backup leaves nothing half-made behind");
}

Test(cli, backup_copies_whole_checkpoint_lines_only)
{
    make_dir("d");
    write_file("d/fhirgw.db", ""); /* an empty file is an empty SQLite database */
    /* the gateway appends checkpoints a line at a time: a backup may meet one half written */
    write_file("d/audit-checkpoints", "v1 10 first\nv1 20 second\nv1 30 half-writ");
    char *out;
    cr_expect_eq(run("backup --dev d --to 'b/%Y'", &out), 0, "%s", out);
    free(out);
    char year[8], name[64], text[128] = "";
    time_t now = time(NULL);
    strftime(year, sizeof year, "%Y", localtime(&now));
    snprintf(name, sizeof name, "b/%s/audit-checkpoints", year);
    cr_assert(read_text(name, text, sizeof text), "the backup's folder is named by strftime: %s", name);
    cr_expect_str_eq(text, "v1 10 first\nv1 20 second\n", "the half-written line is left out");
    snprintf(name, sizeof name, "b/%s/fhirgw.db-documents", year);
    cr_expect(exists(name), "the documents' folder is there, empty");
}

Test(cli, restore_refuses_usage_errors_and_a_folder_without_a_backup)
{
    char *out;
    cr_expect_eq(run("restore", &out), 2);
    cr_expect_not_null(strstr(out, "usage: fhirgw restore"), "%s", out);
    free(out);
    make_dir("d");
    write_file("d/fhirgw.db", "");
    cr_expect_eq(run("restore --dev d --from sub", &out), 2);
    cr_expect_not_null(strstr(out, "holds no backup"), "%s", out);
    free(out);
    cr_expect(exists("d/fhirgw.db"), "nothing was moved for a restore that could not be made");
}

Test(cli, restore_that_cannot_copy_the_checkpoints_changes_nothing)
{
    make_dir("d");
    write_file("d/fhirgw.db", "");
    write_file("d/audit-checkpoints", "v1 10 live\n");
    make_dir("b");
    write_file("b/fhirgw.db", "");
    make_dir("b/audit-checkpoints"); /* reads fail, as a bad disk's would */
    char *out;
    cr_expect_eq(run("restore --dev d --from b", &out), 2);
    cr_expect_not_null(strstr(out, "nothing was restored"), "%s", out);
    free(out);
    cr_expect(exists("d/fhirgw.db"), "the store stays in place");
    cr_expect_not(exists("d/audit-checkpoints.restoring"), "no half copy is left beside the checkpoints");
    char text[64] = "";
    cr_assert(read_text("d/audit-checkpoints", text, sizeof text));
    cr_expect_str_eq(text, "v1 10 live\n", "the live checkpoints are untouched");
    expect_no_entry_with("", "before-restore"); /* nothing was moved aside */
    expect_no_entry_with("d", "before-restore");
}
