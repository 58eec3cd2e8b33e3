/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "bus-util.h"

/* `sbx session`: an interactive prompt on one org.sbx.Session1 (scriptable when stdin is not a tty). */
int sbx_session(SbxBusKind kind, const char *address, int argc, char **argv);

/* Whether a first line starts a block that continues until an empty line: it ends in ':' or '\',
 * leaves a bracket open, or leaves a multi-line string open (python '''/""", javascript `, raw quotes);
 * raw also: ends in then, do, else, in, |, && or ||, or starts a here-document. Strings and comments
 * are skipped when counting brackets. language is python, javascript or raw. */
bool sbx_line_opens_block(const char *line, const char *language);

/* Splits a dot command into words: blanks separate, '…' is literal, "…" and bare \ escape one character.
 * Returns the number of words (at most max), -EINVAL for an unterminated quote, -E2BIG for too many.
 * The words point into buf, which is modified. */
int sbx_split_words(char *buf, char **words, size_t max);
