/* tests/test_server.c — placeholder while the suite is written. */
#include <criterion/criterion.h>

#include "gateway/server.h"

Test(server, defaults)
{
    srv_config cfg;
    srv_config_defaults(&cfg);
    cr_assert_eq(cfg.port, SRV_DEFAULT_PORT);
}
