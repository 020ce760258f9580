/*
 * output.c - how domsctl prints a result: JSON exactly as the daemon gave it with --json,
 * otherwise lines a person reads (key: value, or a table for a list of objects).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"

/*
 * A list of attachments as a person reads it: "att_... image 219 B stored", comma-separated
 * ("-" for none). NULL when v is not such a list.
 */
static char *attachments_text(const cJSON *v)
{
    const cJSON *a;
    size_t cap = 1, len = 0;
    char *out;

    if (!cJSON_IsArray(v))
        return NULL;
    cJSON_ArrayForEach(a, v)
    {
        if (!cJSON_IsString(cJSON_GetObjectItem(a, "attachment_id")))
            return NULL;
        cap += 160;
    }
    if (cJSON_GetArraySize(v) == 0)
        return strdup("-");
    out = malloc(cap);
    if (out == NULL)
        return NULL;
    out[0] = '\0';
    cJSON_ArrayForEach(a, v)
    {
        const cJSON *size = cJSON_GetObjectItem(a, "size");
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(a, "type"));
        const char *state = cJSON_GetStringValue(cJSON_GetObjectItem(a, "state"));
        char bytes[32] = "";

        if (cJSON_IsNumber(size))
            snprintf(bytes, sizeof(bytes), " %.0f B", size->valuedouble);
        len += (size_t)snprintf(out + len, cap - len, "%s%.40s %.16s%s %.16s", len ? ", " : "",
                                cJSON_GetStringValue(cJSON_GetObjectItem(a, "attachment_id")),
                                type ? type : "?", bytes, state ? state : "");
    }
    return out;
}

/* A scalar as text: strings bare, null as "-", a list of attachments as attachments_text()
 * says, the rest as JSON. */
static char *scalar_text(const cJSON *v)
{
    char *att = attachments_text(v);

    if (att != NULL)
        return att;
    if (cJSON_IsString(v))
        return strdup(v->valuestring);
    if (cJSON_IsNull(v))
        return strdup("-");
    return cJSON_PrintUnformatted(v);
}

static void print_object(FILE *out, const cJSON *obj, int indent)
{
    const cJSON *item;

    cJSON_ArrayForEach(item, obj)
    {
        if (cJSON_IsObject(item)) {
            fprintf(out, "%*s%s:\n", indent, "", item->string);
            print_object(out, item, indent + 2);
        } else {
            char *text = scalar_text(item);
            fprintf(out, "%*s%s: %s\n", indent, "", item->string, text ? text : "");
            free(text);
        }
    }
}

/* A list of objects as a table whose columns are the first object's keys. */
static void print_table(FILE *out, const cJSON *arr)
{
    const cJSON *first = cJSON_GetArrayItem(arr, 0), *col, *row;
    int ncols = cJSON_GetArraySize(first), c;
    int *width = calloc((size_t)ncols + 1, sizeof(int));

    c = 0;
    cJSON_ArrayForEach(col, first) width[c++] = (int)strlen(col->string);
    cJSON_ArrayForEach(row, arr)
    {
        c = 0;
        cJSON_ArrayForEach(col, first)
        {
            char *text = scalar_text(cJSON_GetObjectItemCaseSensitive(row, col->string));
            int w = text ? (int)strlen(text) : 0;
            if (w > width[c])
                width[c] = w > 60 ? 60 : w;
            c++;
            free(text);
        }
    }
    c = 0;
    cJSON_ArrayForEach(col, first)
    {
        fprintf(out, "%-*s  ", width[c], col->string);
        c++;
    }
    fputc('\n', out);
    cJSON_ArrayForEach(row, arr)
    {
        c = 0;
        cJSON_ArrayForEach(col, first)
        {
            char *text = scalar_text(cJSON_GetObjectItemCaseSensitive(row, col->string));
            fprintf(out, "%-*.*s  ", width[c], 60, text ? text : "");
            c++;
            free(text);
        }
        fputc('\n', out);
    }
    free(width);
}

void domsctl_print(FILE *out, const cJSON *result, int json)
{
    if (json) {
        char *text = cJSON_PrintUnformatted(result);
        fprintf(out, "%s\n", text ? text : "null");
        free(text);
    } else if (cJSON_IsArray(result)) {
        if (cJSON_GetArraySize(result) == 0)
            fprintf(out, "(none)\n");
        else if (cJSON_IsObject(cJSON_GetArrayItem(result, 0)))
            print_table(out, result);
        else {
            char *text = cJSON_PrintUnformatted(result);
            fprintf(out, "%s\n", text ? text : "");
            free(text);
        }
    } else if (cJSON_IsObject(result)) {
        print_object(out, result, 0);
    } else {
        char *text = scalar_text(result);
        fprintf(out, "%s\n", text ? text : "");
        free(text);
    }
}
