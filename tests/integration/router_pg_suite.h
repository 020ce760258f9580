/*
 * router_pg_suite.h - what test_router_pg.c shares with test_router_assign.c: one test
 * program on its own PostgreSQL, split into files by concern.
 */
#ifndef ROUTER_PG_SUITE_H
#define ROUTER_PG_SUITE_H

#include "stack.h"

extern struct th_stack st;

/* Creates a workspace named name; its id (a new string). */
char *workspace(const char *name);

/* test_router_assign.c */
void test_assign_racing(void);
void test_assign_rounds(void);

#endif
