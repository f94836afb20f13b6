/* Common includes for the cmocka unit tests: cmocka needs these, in this order. */
#ifndef NC_TEST_H
#define NC_TEST_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#endif
