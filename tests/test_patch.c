/*
 * tests/test_patch.c — fhir/patch: JSON Patch (RFC 6902, its appendix A
 * examples one by one, pointer escapes, failures and all-or-nothing) and
 * FHIRPath Patch (every operation type, lists, choice elements, complex
 * values from parts, and the failures the spec names).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/patch.h"

static fpatch_error last_err;

/* Apply a patch (fhirpath: FHIRPath Patch, else JSON Patch); the result (malloc'd) or NULL with last_err. */
static char *apply(const char *resource, const char *patch, bool fhirpath)
{
    char *rtext = strdup(resource), *ptext = strdup(patch);
    fj_doc rdoc, pdoc;
    fj_error e;
    cr_assert(fj_parse(rtext, strlen(rtext), NULL, &rdoc, &e), "bad test resource: %s", e.message);
    cr_assert(fj_parse(ptext, strlen(ptext), NULL, &pdoc, &e), "bad test patch: %s", e.message);
    size_t len = 0;
    char *out;
    if (fhirpath) {
        fp_arena *a = fp_arena_new();
        out = fpatch_fhirpath(&rdoc, &pdoc, NULL, a, &len, &last_err);
        fp_arena_free(a);
    } else {
        out = fpatch_json_patch(&rdoc, &pdoc, &len, &last_err);
    }
    if (out)
        cr_expect_eq(strlen(out), len);
    fj_doc_free(&rdoc);
    fj_doc_free(&pdoc);
    free(rtext);
    free(ptext);
    return out;
}

static void expect_result(const char *resource, const char *patch, bool fhirpath, const char *want)
{
    char *got = apply(resource, patch, fhirpath);
    cr_assert_not_null(got, "patch failed: op %d (%s %s): %s", last_err.op, last_err.op_name, last_err.path,
                       last_err.message);
    cr_expect_str_eq(got, want);
    free(got);
}

/* The patch fails at operation `op`, malformed or not, with `words` in the message. */
static void expect_failure(const char *resource, const char *patch, bool fhirpath, int op, bool malformed,
                           const char *words)
{
    char *got = apply(resource, patch, fhirpath);
    cr_expect_null(got, "the patch applied: %s", got ? got : "");
    free(got);
    cr_expect_eq(last_err.op, op, "failing op %d, expected %d (%s)", last_err.op, op, last_err.message);
    cr_expect_eq(last_err.malformed, malformed, "malformed %d: %s", last_err.malformed, last_err.message);
    cr_expect_not_null(strstr(last_err.message, words), "message '%s' lacks '%s'", last_err.message, words);
}

#define JP(r, p, want) expect_result(r, p, false, want)
#define JP_FAIL(r, p, op, malformed, words) expect_failure(r, p, false, op, malformed, words)

/* ---- JSON Patch: RFC 6902 appendix A ---- */

Test(json_patch, a1_add_object_member)
{
    JP("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\"}]",
       "{\"foo\":\"bar\",\"baz\":\"qux\"}");
}

Test(json_patch, a2_add_array_element)
{
    JP("{\"foo\":[\"bar\",\"baz\"]}", "[{\"op\":\"add\",\"path\":\"/foo/1\",\"value\":\"qux\"}]",
       "{\"foo\":[\"bar\",\"qux\",\"baz\"]}");
}

Test(json_patch, a3_remove_object_member)
{
    JP("{\"baz\":\"qux\",\"foo\":\"bar\"}", "[{\"op\":\"remove\",\"path\":\"/baz\"}]", "{\"foo\":\"bar\"}");
}

Test(json_patch, a4_remove_array_element)
{
    JP("{\"foo\":[\"bar\",\"qux\",\"baz\"]}", "[{\"op\":\"remove\",\"path\":\"/foo/1\"}]",
       "{\"foo\":[\"bar\",\"baz\"]}");
}

Test(json_patch, a5_replace_value)
{
    JP("{\"baz\":\"qux\",\"foo\":\"bar\"}", "[{\"op\":\"replace\",\"path\":\"/baz\",\"value\":\"boo\"}]",
       "{\"baz\":\"boo\",\"foo\":\"bar\"}");
}

Test(json_patch, a6_move_value)
{
    JP("{\"foo\":{\"bar\":\"baz\",\"waldo\":\"fred\"},\"qux\":{\"corge\":\"grault\"}}",
       "[{\"op\":\"move\",\"from\":\"/foo/waldo\",\"path\":\"/qux/thud\"}]",
       "{\"foo\":{\"bar\":\"baz\"},\"qux\":{\"corge\":\"grault\",\"thud\":\"fred\"}}");
}

Test(json_patch, a7_move_array_element)
{
    JP("{\"foo\":[\"all\",\"grass\",\"cows\",\"eat\"]}", "[{\"op\":\"move\",\"from\":\"/foo/1\",\"path\":\"/foo/3\"}]",
       "{\"foo\":[\"all\",\"cows\",\"eat\",\"grass\"]}");
}

Test(json_patch, a8_test_success)
{
    JP("{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}",
       "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"qux\"},{\"op\":\"test\",\"path\":\"/foo/1\",\"value\":2}]",
       "{\"baz\":\"qux\",\"foo\":[\"a\",2,\"c\"]}");
}

Test(json_patch, a9_test_error)
{
    JP_FAIL("{\"baz\":\"qux\"}", "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"bar\"}]", 0, false, "test failed");
    cr_expect_str_eq(last_err.op_name, "test");
    cr_expect_str_eq(last_err.path, "/baz");
}

Test(json_patch, a10_add_nested_member_object)
{
    JP("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/child\",\"value\":{\"grandchild\":{\"a\":1}}}]",
       "{\"foo\":\"bar\",\"child\":{\"grandchild\":{\"a\":1}}}");
}

Test(json_patch, a11_unrecognized_members_ignored)
{
    JP("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\",\"xyz\":123}]",
       "{\"foo\":\"bar\",\"baz\":\"qux\"}");
}

Test(json_patch, a12_add_to_nonexistent_target)
{
    JP_FAIL("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz/bat\",\"value\":\"qux\"}]", 0, false,
            "does not exist");
}

Test(json_patch, a13_duplicate_op_member)
{
    JP_FAIL("{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\",\"op\":\"remove\"}]", 0, true,
            "twice");
}

Test(json_patch, a14_escape_ordering)
{
    JP("{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":10}]", "{\"/\":9,\"~1\":10}");
    JP("{\"/\":9,\"~1\":10}", "[{\"op\":\"replace\",\"path\":\"/~1\",\"value\":8}]", "{\"/\":8,\"~1\":10}");
    JP("{\"a/b\":{\"m~n\":1}}", "[{\"op\":\"remove\",\"path\":\"/a~1b/m~0n\"}]", "{}");
}

Test(json_patch, a15_strings_and_numbers_differ)
{
    JP_FAIL("{\"/\":9,\"~1\":10}", "[{\"op\":\"test\",\"path\":\"/~01\",\"value\":\"10\"}]", 0, false, "test failed");
}

Test(json_patch, a16_add_array_value)
{
    JP("{\"foo\":[\"bar\"]}", "[{\"op\":\"add\",\"path\":\"/foo/-\",\"value\":[\"abc\",\"def\"]}]",
       "{\"foo\":[\"bar\",[\"abc\",\"def\"]]}");
}

/* ---- JSON Patch: beyond the appendix ---- */

Test(json_patch, copy_and_replace_the_root)
{
    JP("{\"a\":{\"b\":[1,2]}}", "[{\"op\":\"copy\",\"from\":\"/a/b\",\"path\":\"/c\"}]",
       "{\"a\":{\"b\":[1,2]},\"c\":[1,2]}");
    JP("{\"a\":1}", "[{\"op\":\"replace\",\"path\":\"\",\"value\":{\"z\":0}}]", "{\"z\":0}");
    JP("{\"a\":1}", "[{\"op\":\"add\",\"path\":\"/a\",\"value\":2}]", "{\"a\":2}");
}

Test(json_patch, test_compares_by_value)
{
    JP("{\"n\":1.0,\"o\":{\"x\":1,\"y\":[true,null]}}",
       "[{\"op\":\"test\",\"path\":\"/n\",\"value\":1},"
       "{\"op\":\"test\",\"path\":\"/o\",\"value\":{\"y\":[true,null],\"x\":1}}]",
       "{\"n\":1.0,\"o\":{\"x\":1,\"y\":[true,null]}}");
    JP_FAIL("{\"o\":{\"x\":1}}", "[{\"op\":\"test\",\"path\":\"/o\",\"value\":{\"x\":1,\"y\":2}}]", 0, false,
            "test failed");
}

Test(json_patch, removals_leave_no_empty_containers)
{
    /* FHIR JSON has no empty arrays or objects: the last element removed takes its list along */
    JP("{\"a\":[1],\"b\":{\"c\":[2]},\"d\":3}",
       "[{\"op\":\"remove\",\"path\":\"/a/0\"},{\"op\":\"remove\",\"path\":\"/b/c/0\"}]", "{\"d\":3}");
}

Test(json_patch, failures_name_the_operation)
{
    const char *doc = "{\"foo\":[\"a\",\"b\"]}";
    JP_FAIL(doc, "[{\"op\":\"remove\",\"path\":\"\"}]", 0, false, "whole document");
    JP_FAIL(doc, "[{\"op\":\"add\",\"path\":\"/foo/3\",\"value\":1}]", 0, false, "out of range");
    JP_FAIL(doc, "[{\"op\":\"remove\",\"path\":\"/foo/2\"}]", 0, false, "out of range");
    JP_FAIL(doc, "[{\"op\":\"remove\",\"path\":\"/foo/-\"}]", 0, false, "does not exist");
    JP_FAIL(doc, "[{\"op\":\"replace\",\"path\":\"/bar\",\"value\":1}]", 0, false, "does not exist");
    JP_FAIL(doc, "[{\"op\":\"remove\",\"path\":\"/foo/01\"}]", 0, false, "not an array index");
    JP_FAIL(doc, "[{\"op\":\"add\",\"path\":\"/foo/0/x\",\"value\":1}]", 0, false, "no members");
    JP_FAIL(doc, "[{\"op\":\"move\",\"from\":\"/foo\",\"path\":\"/foo/0\"}]", 0, false, "own children");
    JP_FAIL(doc, "[{\"op\":\"copy\",\"from\":\"/nope\",\"path\":\"/x\"}]", 0, false, "does not exist");
    /* all or nothing: the first operation's change is not returned */
    JP_FAIL(doc, "[{\"op\":\"add\",\"path\":\"/x\",\"value\":1},{\"op\":\"test\",\"path\":\"/x\",\"value\":2}]", 1,
            false, "test failed");
    cr_expect_str_eq(last_err.path, "/x");
}

Test(json_patch, malformed_documents)
{
    const char *doc = "{\"foo\":1}";
    JP_FAIL(doc, "{\"op\":\"add\"}", -1, true, "array of operations");
    JP_FAIL(doc, "[1]", 0, true, "object");
    JP_FAIL(doc, "[{\"path\":\"/foo\"}]", 0, true, "\"op\"");
    JP_FAIL(doc, "[{\"op\":\"frobnicate\",\"path\":\"/foo\"}]", 0, true, "unknown op");
    JP_FAIL(doc, "[{\"op\":\"add\",\"path\":\"/foo\"}]", 0, true, "\"value\"");
    JP_FAIL(doc, "[{\"op\":\"move\",\"path\":\"/foo\"}]", 0, true, "\"from\"");
    JP_FAIL(doc, "[{\"op\":\"remove\",\"path\":\"foo\"}]", 0, true, "starts with '/'");
    JP_FAIL(doc, "[{\"op\":\"remove\",\"path\":\"/f~2\"}]", 0, true, "'~'");
    JP("{\"foo\":1}", "[]", "{\"foo\":1}");
}

Test(json_patch, limits)
{
    /* every copy of the root doubles the document: stopped at FPATCH_MAX_GROWTH, not at memory's end */
    char patch[4096] = "[";
    for (int i = 0; i < 40; i++)
        sprintf(patch + strlen(patch), "%s{\"op\":\"copy\",\"from\":\"\",\"path\":\"/c%d\"}", i ? "," : "", i);
    strcat(patch, "]");
    /* 64 bytes doubled 14 times is 1 MiB */
    JP_FAIL("{\"a\":\"01234567890123456789012345678901234567890123456\"}", patch, 14, false, "grow by more than");
    /* too many operations */
    size_t n = FPATCH_MAX_OPERATIONS + 1, size = n * 40 + 8;
    char *many = malloc(size);
    strcpy(many, "[");
    for (size_t i = 0; i < n; i++)
        strcat(many,
               i ? ",{\"op\":\"test\",\"path\":\"\",\"value\":{}}" : "{\"op\":\"test\",\"path\":\"\",\"value\":{}}");
    strcat(many, "]");
    JP_FAIL("{}", many, -1, true, "at most");
    free(many);
}

/* ---- FHIRPath Patch ---- */

#define FP(r, p, want) expect_result(r, p, true, want)
#define FP_FAIL(r, p, op, malformed, words) expect_failure(r, p, true, op, malformed, words)

#define PARAMS(ops) "{\"resourceType\":\"Parameters\",\"parameter\":[" ops "]}"
#define OP(parts) "{\"name\":\"operation\",\"part\":[" parts "]}"
#define TYPE(t) "{\"name\":\"type\",\"valueCode\":\"" t "\"}"
#define PATH(p) ",{\"name\":\"path\",\"valueString\":\"" p "\"}"
#define NAME(n) ",{\"name\":\"name\",\"valueString\":\"" n "\"}"
#define INDEX(name, i) ",{\"name\":\"" name "\",\"valueInteger\":" #i "}"
#define VALUE(x) ",{\"name\":\"value\"," x "}"

#define TASK "{\"resourceType\":\"Task\",\"id\":\"t1\",\"status\":\"requested\",\"intent\":\"order\"}"
#define PATIENT                                                                                             \
    "{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"a\"},{\"value\":\"b\"},{\"value\":\"c\"}]," \
    "\"gender\":\"female\",\"birthDate\":\"1970-01-01\",\"_birthDate\":{\"id\":\"bd\"}}"

Test(fhirpath_patch, replace_a_task_status)
{
    FP(TASK, PARAMS(OP(TYPE("replace") PATH("Task.status") VALUE("\"valueCode\":\"completed\""))),
       "{\"resourceType\":\"Task\",\"id\":\"t1\",\"status\":\"completed\",\"intent\":\"order\"}");
}

Test(fhirpath_patch, replace_a_choice_takes_the_new_type)
{
    FP("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"valueString\":\"high\"}",
       PARAMS(OP(TYPE("replace") PATH("Observation.value") VALUE("\"valueQuantity\":{\"value\":5,\"unit\":\"mg\"}"))),
       "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
       "\"valueQuantity\":{\"value\":5,\"unit\":\"mg\"}}");
}

Test(fhirpath_patch, add_sets_or_appends)
{
    /* a single element that is absent */
    FP(TASK, PARAMS(OP(TYPE("add") PATH("Task") NAME("priority") VALUE("\"valueCode\":\"urgent\""))),
       "{\"resourceType\":\"Task\",\"id\":\"t1\",\"status\":\"requested\",\"intent\":\"order\",\"priority\":\"urgent\"}");
    /* to an existing list, a complex value from parts */
    FP("{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"a\"}]}",
       PARAMS(OP(TYPE("add") PATH("Patient") NAME(
           "identifier") ",{\"name\":\"value\",\"part\":[{\"name\":\"system\",\"valueUri\":\"http://x.org\"},"
                         "{\"name\":\"value\",\"valueString\":\"b\"}]}")),
       "{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"a\"},{\"system\":\"http://x.org\",\"value\":\"b\"}]}");
    /* a new list; repeated parts form a nested list */
    FP("{\"resourceType\":\"Patient\"}",
       PARAMS(OP(TYPE("add") PATH("Patient") NAME(
           "name") ",{\"name\":\"value\",\"part\":[{\"name\":\"family\",\"valueString\":\"Jansen\"},"
                   "{\"name\":\"given\",\"valueString\":\"Anna\"},{\"name\":\"given\",\"valueString\":\"Maria\"}]}")),
       "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Jansen\",\"given\":[\"Anna\",\"Maria\"]}]}");
    /* a choice element named by the value's type */
    FP("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"}}",
       PARAMS(OP(TYPE("add") PATH("Observation") NAME("effective") VALUE("\"valueDateTime\":\"2024-05-01\""))),
       "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"effectiveDateTime\":\"2024-05-01\"}");
}

Test(fhirpath_patch, insert_at_an_index)
{
    FP(PATIENT,
       PARAMS(OP(TYPE("insert") PATH("Patient.identifier")
                     INDEX("index", 1) ",{\"name\":\"value\",\"part\":[{\"name\":\"value\",\"valueString\":\"x\"}]}")),
       "{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"a\"},{\"value\":\"x\"},{\"value\":\"b\"},"
       "{\"value\":\"c\"}],\"gender\":\"female\",\"birthDate\":\"1970-01-01\",\"_birthDate\":{\"id\":\"bd\"}}");
    /* at the end, and into a list that is not there yet */
    FP("{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"a\"}]}",
       PARAMS(
           OP(TYPE("insert") PATH("Patient.identifier") INDEX("index", 1) ",{\"name\":\"value\",\"part\":[{\"name\":\"value\",\"valueString\":\"z\"}]}") "," OP(
               TYPE("insert") PATH("Patient.telecom")
                   INDEX("index", 0) ",{\"name\":\"value\",\"part\":[{\"name\":\"system\",\"valueCode\":\"phone\"}]}")),
       "{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"a\"},{\"value\":\"z\"}],"
       "\"telecom\":[{\"system\":\"phone\"}]}");
}

Test(fhirpath_patch, delete_one_element)
{
    FP(PATIENT, PARAMS(OP(TYPE("delete") PATH("Patient.identifier[1]"))),
       "{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"a\"},{\"value\":\"c\"}],\"gender\":\"female\","
       "\"birthDate\":\"1970-01-01\",\"_birthDate\":{\"id\":\"bd\"}}");
    /* a primitive goes with its _name companion; nothing selected is no change */
    FP(PATIENT, PARAMS(OP(TYPE("delete") PATH("Patient.birthDate")) "," OP(TYPE("delete") PATH("Patient.telecom"))),
       "{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"a\"},{\"value\":\"b\"},{\"value\":\"c\"}],"
       "\"gender\":\"female\"}");
    /* the last element of a list takes the list along */
    FP("{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"a\"}],\"active\":true}",
       PARAMS(OP(TYPE("delete") PATH("Patient.identifier"))), "{\"resourceType\":\"Patient\",\"active\":true}");
}

Test(fhirpath_patch, move_within_a_list)
{
    FP("{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"a\"},{\"value\":\"b\"},{\"value\":\"c\"}]}",
       PARAMS(OP(TYPE("move") PATH("Patient.identifier") INDEX("source", 0) INDEX("destination", 2))),
       "{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"b\"},{\"value\":\"c\"},{\"value\":\"a\"}]}");
    FP("{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"a\"},{\"value\":\"b\"},{\"value\":\"c\"}]}",
       PARAMS(OP(TYPE("move") PATH("Patient.identifier") INDEX("source", 2) INDEX("destination", 0))),
       "{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"c\"},{\"value\":\"a\"},{\"value\":\"b\"}]}");
}

Test(fhirpath_patch, operations_apply_in_order)
{
    FP(TASK,
       PARAMS(OP(TYPE("replace") PATH("Task.status") VALUE("\"valueCode\":\"accepted\"")) "," OP(TYPE("add") PATH("Task") NAME(
           "note") ",{\"name\":\"value\",\"part\":[{\"name\":\"text\",\"valueString\":\"ok\"}]}") "," OP(TYPE("replace")
                                                                                                             PATH(
                                                                                                                 "Task.note.text")
                                                                                                                 VALUE(
                                                                                                                     "\"valueMarkdown\":\"fine\""))),
       "{\"resourceType\":\"Task\",\"id\":\"t1\",\"status\":\"accepted\",\"intent\":\"order\",\"note\":[{\"text\":\"fine\"}]}");
}

Test(fhirpath_patch, failures_name_the_operation)
{
    FP_FAIL(PATIENT, PARAMS(OP(TYPE("delete") PATH("Patient.identifier"))), 0, false, "selects 3 elements");
    FP_FAIL(PATIENT, PARAMS(OP(TYPE("delete") PATH("Patient"))), 0, false, "resource itself");
    FP_FAIL(PATIENT, PARAMS(OP(TYPE("replace") PATH("Patient.active") VALUE("\"valueBoolean\":true"))), 0, false,
            "selects 0 elements");
    FP_FAIL(PATIENT,
            PARAMS(OP(
                TYPE("insert") PATH("Patient.identifier")
                    INDEX("index", 4) ",{\"name\":\"value\",\"part\":[{\"name\":\"value\",\"valueString\":\"x\"}]}")),
            0, false, "out of range");
    FP_FAIL(PATIENT, PARAMS(OP(TYPE("move") PATH("Patient.identifier") INDEX("source", 3) INDEX("destination", 0))), 0,
            false, "out of range");
    FP_FAIL(PATIENT, PARAMS(OP(TYPE("add") PATH("Patient") NAME("gender") VALUE("\"valueCode\":\"male\""))), 0, false,
            "use replace");
    FP_FAIL(PATIENT, PARAMS(OP(TYPE("add") PATH("Patient") NAME("colour") VALUE("\"valueCode\":\"red\""))), 0, false,
            "no element 'colour'");
    /* all or nothing, and the index of the failing operation */
    FP_FAIL(TASK,
            PARAMS(OP(TYPE("replace") PATH("Task.status") VALUE("\"valueCode\":\"accepted\"")) "," OP(
                TYPE("replace") PATH("Task.priority") VALUE("\"valueCode\":\"urgent\""))),
            1, false, "selects 0 elements");
    cr_expect_str_eq(last_err.op_name, "replace");
    cr_expect_str_eq(last_err.path, "Task.priority");
}

Test(fhirpath_patch, malformed_documents)
{
    FP_FAIL(TASK, "[{\"op\":\"add\"}]", -1, true, "Parameters");
    FP_FAIL(TASK, PARAMS(OP(TYPE("upsert") PATH("Task.status"))), 0, true, "unknown type");
    FP_FAIL(TASK, PARAMS(OP(TYPE("replace") PATH("Task.status"))), 0, true, "needs a value");
    FP_FAIL(TASK, PARAMS(OP(TYPE("replace") PATH("Task.status.(") VALUE("\"valueCode\":\"x\""))), 0, true,
            "not FHIRPath");
    FP_FAIL(TASK, PARAMS(OP(TYPE("add") PATH("Task") VALUE("\"valueCode\":\"x\""))), 0, true, "needs a name");
    FP_FAIL(TASK, PARAMS(OP(TYPE("insert") PATH("Task.note") VALUE("\"valueCode\":\"x\""))), 0, true, "needs an index");
    FP_FAIL(TASK, PARAMS("{\"name\":\"other\",\"part\":[" TYPE("delete") PATH("Task.status") "]}"), 0, true,
            "\"operation\"");
}

Test(fhirpath_patch, paths_with_functions_and_nested_lists)
{
    FP(PATIENT, PARAMS(OP(TYPE("delete") PATH("Patient.identifier.where(value = 'b')"))),
       "{\"resourceType\":\"Patient\",\"identifier\":[{\"value\":\"a\"},{\"value\":\"c\"}],\"gender\":\"female\","
       "\"birthDate\":\"1970-01-01\",\"_birthDate\":{\"id\":\"bd\"}}");
    FP("{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"A\",\"B\"]}]}",
       PARAMS(OP(TYPE("replace") PATH("Patient.name.given[1]") VALUE("\"valueString\":\"C\"")) "," OP(
           TYPE("insert") PATH("Patient.name.given") INDEX("index", 0) VALUE("\"valueString\":\"Z\""))),
       "{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"Z\",\"A\",\"C\"]}]}");
    /* an extension: its value[x] keeps the type of the part */
    FP("{\"resourceType\":\"Patient\"}",
       PARAMS(OP(TYPE("add") PATH("Patient") NAME(
           "extension") ",{\"name\":\"value\",\"part\":[{\"name\":\"url\",\"valueUri\":\"http://x.org/e\"},"
                        "{\"name\":\"value\",\"valueBoolean\":true}]}")),
       "{\"resourceType\":\"Patient\",\"extension\":[{\"url\":\"http://x.org/e\",\"valueBoolean\":true}]}");
}

/* Every one-byte mutation of valid patches that still parses: applied or refused, never a crash or a leak. */
static void mutate_all(const char *resource, const char *patch, bool fhirpath)
{
    const char subst[] = "\"/~01-9{}[],:a. ";
    size_t len = strlen(patch), applied = 0, refused = 0;
    char *m = strdup(patch);
    for (size_t i = 0; i < len; i++) {
        for (const char *c = subst; *c; c++) {
            strcpy(m, patch);
            m[i] = *c;
            char *copy = strdup(m);
            fj_doc d;
            fj_error e;
            bool json = fj_parse(copy, len, NULL, &d, &e);
            fj_doc_free(&d);
            free(copy);
            if (!json)
                continue;
            char *out = apply(resource, m, fhirpath);
            out ? applied++ : refused++;
            if (!out)
                cr_expect(last_err.message[0], "a refusal says why: %s", m);
            free(out);
        }
    }
    free(m);
    cr_expect_gt(applied, 0);
    cr_expect_gt(refused, 0);
}

Test(json_patch, mutated_patches_never_crash)
{
    mutate_all("{\"a\":[1,{\"b~/\":2}],\"c\":\"d\"}",
               "[{\"op\":\"move\",\"from\":\"/a/1/b~0~1\",\"path\":\"/a/-\"},{\"op\":\"copy\",\"from\":\"/c\","
               "\"path\":\"/a/0\"},{\"op\":\"test\",\"path\":\"/a/0\",\"value\":\"d\"}]",
               false);
}

Test(fhirpath_patch, mutated_patches_never_crash)
{
    mutate_all(PATIENT,
               PARAMS(OP(TYPE("move") PATH("Patient.identifier") INDEX("source", 0) INDEX("destination", 2)) "," OP(
                   TYPE("insert") PATH("Patient.identifier")
                       INDEX("index",
                             1) ",{\"name\":\"value\",\"part\":[{\"name\":\"value\",\"valueString\":\"x\"}]}")),
               true);
}

Test(fhirpath_patch, primitive_lists_keep_their_extensions_aligned)
{
#define NAMES \
    "{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"A\",\"B\",\"C\"],\"_given\":[null,{\"id\":\"b\"},null]}]}"
    FP(NAMES, PARAMS(OP(TYPE("delete") PATH("Patient.name.given[0]"))),
       "{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"B\",\"C\"],\"_given\":[{\"id\":\"b\"},null]}]}");
    FP(NAMES, PARAMS(OP(TYPE("insert") PATH("Patient.name.given") INDEX("index", 1) VALUE("\"valueString\":\"X\""))),
       "{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"A\",\"X\",\"B\",\"C\"],"
       "\"_given\":[null,null,{\"id\":\"b\"},null]}]}");
    FP(NAMES, PARAMS(OP(TYPE("move") PATH("Patient.name.given") INDEX("source", 1) INDEX("destination", 2))),
       "{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"A\",\"C\",\"B\"],\"_given\":[null,null,{\"id\":\"b\"}]}]}");
#undef NAMES
}
