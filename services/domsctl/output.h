/*
 * output.h - printing results for people or for programs.
 */
#ifndef DOMSCTL_OUTPUT_H
#define DOMSCTL_OUTPUT_H

#include <cjson/cJSON.h>
#include <stdio.h>

/* Prints result: exactly one JSON value and a newline when json, readable lines otherwise. */
void domsctl_print(FILE *out, const cJSON *result, int json);

#endif
