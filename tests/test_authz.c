/*
 * tests/test_authz.c — the authorisation rules: every role against every
 * kind of resource and action (the HTTP matrix is tested in test_rest.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "gateway/auth/authz.h"

static az_caller caller(const char *ura, const char *roles)
{
    az_caller c = {{0}, az_parse_roles(roles)};
    snprintf(c.ura, sizeof c.ura, "%s", ura);
    return c;
}

Test(authz, roles)
{
    cr_expect_eq(az_parse_roles("elv"), AZ_ROLE_ELV);
    cr_expect_eq(az_parse_roles("elv,grz"), AZ_ROLE_ELV | AZ_ROLE_GRZ);
    cr_expect_eq(az_parse_roles("hospital+gp"), AZ_ROLE_HOSPITAL | AZ_ROLE_GP);
    cr_expect_eq(az_parse_roles("pharmacy"), 0);
    cr_expect_eq(az_parse_roles(""), 0);
    cr_expect_eq(az_parse_roles(NULL), 0);
}

Test(authz, insurers_get_no_clinical_resources)
{
    az_caller ins = caller("90000501", "insurer");
    const char *clinical[] = {"Patient", "CarePlan", "Encounter", "Task", "Bundle", "Goal", "CareTeam", "Condition"};
    az_action actions[] = {AZ_READ, AZ_SEARCH, AZ_HISTORY, AZ_CREATE, AZ_UPDATE, AZ_DELETE, AZ_VALIDATE};
    for (size_t t = 0; t < sizeof clinical / sizeof *clinical; t++)
        for (size_t a = 0; a < sizeof actions / sizeof *actions; a++)
            cr_expect_eq(az_check_type(&ins, clinical[t], actions[a]), AZ_FORBIDDEN, "%s action %zu", clinical[t], a);
    cr_expect_eq(az_check_type(&ins, "Organization", AZ_READ), AZ_ALLOW);
    cr_expect_eq(az_check_type(&ins, "Organization", AZ_CREATE), AZ_FORBIDDEN);
    cr_expect_eq(az_check_type(&ins, "Coverage", AZ_CREATE), AZ_ALLOW);
    /* an insurer that is also a care provider (unusual) is treated as a care provider */
    az_caller both = caller("1", "insurer,gp");
    cr_expect_eq(az_check_type(&both, "CarePlan", AZ_READ), AZ_ALLOW);
}

Test(authz, unregistered_callers_get_nothing)
{
    az_caller nobody = caller("12345678", "");
    cr_expect_eq(az_check_type(&nobody, "Organization", AZ_READ), AZ_FORBIDDEN);
    cr_expect_eq(az_check_type(NULL, "Organization", AZ_READ), AZ_FORBIDDEN);
}

Test(authz, owner_receiver_and_others)
{
    az_caller hospital = caller("90000101", "hospital");
    az_caller elv = caller("90000301", "elv");
    az_caller other_elv = caller("90000302", "elv");
    const char *tags[] = {"90000301"};
    /* the sending hospital owns the Task it made for the ELV provider */
    az_action all[] = {AZ_READ, AZ_HISTORY, AZ_UPDATE, AZ_DELETE};
    for (size_t a = 0; a < sizeof all / sizeof *all; a++)
        cr_expect_eq(az_check_resource(&hospital, "Task", all[a], "90000101", tags, 1), AZ_ALLOW);
    /* the receiver reads it and moves it through its states, but does not delete it */
    cr_expect_eq(az_check_resource(&elv, "Task", AZ_READ, "90000101", tags, 1), AZ_ALLOW);
    cr_expect_eq(az_check_resource(&elv, "Task", AZ_UPDATE, "90000101", tags, 1), AZ_ALLOW);
    cr_expect_eq(az_check_resource(&elv, "Task", AZ_DELETE, "90000101", tags, 1), AZ_FORBIDDEN);
    /* a receiver of another kind of resource only reads it */
    cr_expect_eq(az_check_resource(&elv, "Communication", AZ_UPDATE, "90000101", tags, 1), AZ_FORBIDDEN);
    /* anyone else does not learn that it exists */
    for (size_t a = 0; a < sizeof all / sizeof *all; a++)
        cr_expect_eq(az_check_resource(&other_elv, "Task", all[a], "90000101", tags, 1), AZ_HIDDEN);
    cr_expect_eq(az_check_resource(&other_elv, "CarePlan", AZ_READ, "90000101", NULL, 0), AZ_HIDDEN);
    /* the organisation directory is shared for reading, written by its owner only */
    cr_expect_eq(az_check_resource(&other_elv, "Organization", AZ_READ, "90000101", NULL, 0), AZ_ALLOW);
    cr_expect_eq(az_check_resource(&other_elv, "Organization", AZ_UPDATE, "90000101", NULL, 0), AZ_FORBIDDEN);
}

Test(authz, addressing_paths)
{
    const char *const *task = az_addressing_paths("Task");
    cr_assert_not_null(task[0]);
    cr_expect_str_eq(task[0], "Task.owner");
    cr_expect_null(az_addressing_paths("CarePlan")[0]);
}
