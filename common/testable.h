/*
 * testable.h - TESTABLE marks file-local helpers that unit tests call:
 * static in the services, visible in the unit-test build (-DUNIT_TEST).
 */
#ifndef MSG_TESTABLE_H
#define MSG_TESTABLE_H

#ifdef UNIT_TEST
#define TESTABLE
#else
#define TESTABLE static
#endif

#endif
