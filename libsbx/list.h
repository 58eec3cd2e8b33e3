/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Intrusive doubly linked lists kept as a head and a tail pointer; an item has prev and next
 * fields. Each argument is evaluated more than once: pass plain lvalues. */

#define LIST_APPEND(head, tail, item)                                                                                  \
        do {                                                                                                           \
                (item)->prev = (tail);                                                                                 \
                (item)->next = NULL;                                                                                   \
                if (tail)                                                                                              \
                        (tail)->next = (item);                                                                         \
                else                                                                                                   \
                        (head) = (item);                                                                               \
                (tail) = (item);                                                                                       \
        } while (0)

#define LIST_REMOVE(head, tail, item)                                                                                  \
        do {                                                                                                           \
                if ((item)->prev)                                                                                      \
                        (item)->prev->next = (item)->next;                                                             \
                else                                                                                                   \
                        (head) = (item)->next;                                                                         \
                if ((item)->next)                                                                                      \
                        (item)->next->prev = (item)->prev;                                                             \
                else                                                                                                   \
                        (tail) = (item)->prev;                                                                         \
                (item)->prev = (item)->next = NULL;                                                                    \
        } while (0)
