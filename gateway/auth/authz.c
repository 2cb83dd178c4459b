/*
 * gateway/auth/authz.c — the authorisation rules as tables (see authz.h).
 *
 * To change who sees what, change the tables: `categories` says which types
 * are not clinical, `addressing` which elements address a resource to a
 * receiving organisation.
 */
#include "gateway/auth/authz.h"

#include <string.h>

static const struct {
    const char *word;
    unsigned role;
} role_words[] = {
    {"hospital", AZ_ROLE_HOSPITAL}, {"gp", AZ_ROLE_GP},     {"elv", AZ_ROLE_ELV},
    {"grz", AZ_ROLE_GRZ},           {"gzsp", AZ_ROLE_GZSP}, {"insurer", AZ_ROLE_INSURER},
};

unsigned az_parse_roles(const char *text)
{
    unsigned roles = 0;
    while (text && *text) {
        size_t len = strcspn(text, ",+ ");
        for (size_t i = 0; i < sizeof role_words / sizeof *role_words; i++)
            if (strlen(role_words[i].word) == len && !strncmp(role_words[i].word, text, len))
                roles |= role_words[i].role;
        text += len;
        while (*text == ',' || *text == '+' || *text == ' ')
            text++;
    }
    return roles;
}

/* Types that carry no clinical information; everything else counts as clinical. */
static const struct {
    const char *type;
    az_category category;
} categories[] = {
    {"Organization", AZ_ADMINISTRATIVE},
    {"Endpoint", AZ_ADMINISTRATIVE},
    {"Location", AZ_ADMINISTRATIVE},
    {"HealthcareService", AZ_ADMINISTRATIVE},
    {"Practitioner", AZ_ADMINISTRATIVE},
    {"PractitionerRole", AZ_ADMINISTRATIVE},
    {"OrganizationAffiliation", AZ_ADMINISTRATIVE},
    {"CapabilityStatement", AZ_ADMINISTRATIVE},
    {"Coverage", AZ_FINANCIAL},
    {"Contract", AZ_FINANCIAL},
};

az_category az_category_of(const char *type)
{
    for (size_t i = 0; i < sizeof categories / sizeof *categories; i++)
        if (!strcmp(categories[i].type, type))
            return categories[i].category;
    return AZ_CLINICAL;
}

size_t az_types_of(az_category cat, const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof categories / sizeof *categories; i++)
        if (categories[i].category == cat && cat != AZ_CLINICAL && n < max)
            out[n++] = categories[i].type;
    return n;
}

static bool is_write(az_action a)
{
    return a == AZ_CREATE || a == AZ_UPDATE || a == AZ_DELETE;
}

az_decision az_check_type(const az_caller *caller, const char *type, az_action action)
{
    if (!caller || !caller->roles)
        return AZ_FORBIDDEN; /* a certificate we trust, but no registered organisation behind it */
    az_category cat = az_category_of(type);
    bool insurer_only = !(caller->roles & AZ_CARE_ROLES);
    if (insurer_only) {
        if (cat == AZ_CLINICAL)
            return AZ_FORBIDDEN;
        /* insurers keep their own Coverage and Contract records; they read but do not write the others */
        if (is_write(action) && cat != AZ_FINANCIAL)
            return AZ_FORBIDDEN;
    }
    return AZ_ALLOW;
}

static bool tagged(const char *ura, const char *const *tags, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tags[i] && !strcmp(tags[i], ura))
            return true;
    return false;
}

az_decision az_check_resource(const az_caller *caller, const char *type, az_action action, const char *owner,
                              const char *const *tags, size_t tag_count)
{
    az_decision d = az_check_type(caller, type, action);
    if (d != AZ_ALLOW)
        return d;
    bool owns = owner && !strcmp(owner, caller->ura);
    bool addressed = tagged(caller->ura, tags, tag_count);
    if (owns)
        return AZ_ALLOW;
    /* administrative resources (Organization, Endpoint, ...) form the shared directory: everyone reads
     * them, and since their existence is no secret, someone else's is refused openly (403) */
    if (az_category_of(type) == AZ_ADMINISTRATIVE)
        return is_write(action) ? AZ_FORBIDDEN : AZ_ALLOW;
    if (!addressed)
        return AZ_HIDDEN;
    if (!is_write(action))
        return AZ_ALLOW;
    /* the receiver of a Task moves it through its states; other receivers only read */
    if (action == AZ_UPDATE && !strcmp(type, "Task"))
        return AZ_ALLOW;
    return AZ_FORBIDDEN;
}

/* Elements whose Organization references address a resource to its receiver. */
static const char *const task_paths[] = {"Task.owner", "Task.restriction.recipient", NULL};
static const char *const communication_paths[] = {"Communication.recipient", NULL};
static const char *const communication_request_paths[] = {"CommunicationRequest.recipient", NULL};
static const char *const service_request_paths[] = {"ServiceRequest.performer", NULL};
static const char *const document_reference_paths[] = {"DocumentReference.custodian", NULL};
static const char *const coverage_paths[] = {"Coverage.payor", NULL};
/* an insurer's contract with a care provider is for that provider to read (GET /Contract?subject=...) */
static const char *const contract_paths[] = {"Contract.subject", NULL};
static const char *const none[] = {NULL};

static const struct {
    const char *type;
    const char *const *paths;
} addressing[] = {
    {"Task", task_paths},
    {"Communication", communication_paths},
    {"CommunicationRequest", communication_request_paths},
    {"ServiceRequest", service_request_paths},
    {"DocumentReference", document_reference_paths},
    {"Coverage", coverage_paths},
    {"Contract", contract_paths},
};

const char *const *az_addressing_paths(const char *type)
{
    for (size_t i = 0; i < sizeof addressing / sizeof *addressing; i++)
        if (!strcmp(addressing[i].type, type))
            return addressing[i].paths;
    return none;
}
