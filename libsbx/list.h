/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Intrusive doubly linked lists kept as a head and a tail pointer; an item has prev and next
 * fields. Each argument is evaluated more than once: pass plain lvalues. The _AT forms name the
 * two link fields, for an item that sits in more than one list. */

#define LIST_APPEND_AT(head, tail, item, prev, next)                                                                   \
        do {                                                                                                           \
                (item)->prev = (tail);                                                                                 \
                (item)->next = NULL;                                                                                   \
                if (tail)                                                                                              \
                        (tail)->next = (item);                                                                         \
                else                                                                                                   \
                        (head) = (item);                                                                               \
                (tail) = (item);                                                                                       \
        } while (0)

/* Puts item before before; a NULL before appends. */
#define LIST_INSERT_BEFORE_AT(head, tail, before, item, prev, next)                                                    \
        do {                                                                                                           \
                if (!(before))                                                                                         \
                        LIST_APPEND_AT(head, tail, item, prev, next);                                                  \
                else {                                                                                                 \
                        (item)->next = (before);                                                                       \
                        (item)->prev = (before)->prev;                                                                 \
                        if ((before)->prev)                                                                            \
                                (before)->prev->next = (item);                                                         \
                        else                                                                                           \
                                (head) = (item);                                                                       \
                        (before)->prev = (item);                                                                       \
                }                                                                                                      \
        } while (0)

#define LIST_REMOVE_AT(head, tail, item, prev, next)                                                                   \
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

#define LIST_APPEND(head, tail, item) LIST_APPEND_AT(head, tail, item, prev, next)
#define LIST_REMOVE(head, tail, item) LIST_REMOVE_AT(head, tail, item, prev, next)
