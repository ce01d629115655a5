/*
 * group.h — consumer groups and checkpoints over a data directory: commits
 * checked against the queues' ranges, resets to a position (earliest,
 * latest, a time, a checkpoint) applied atomically across queues, and the
 * start offsets a consumer resumes or replays from.
 *
 * A group reset is safe "while no consumer runs" by construction: embedded,
 * the data directory lock admits one process, so no other consumer can hold
 * or commit the group's offsets meanwhile; inside one process, every
 * function here holds the data directory's mutex for its whole read-check-
 * write, so it is atomic with respect to other threads too.
 *
 * Naming: group and checkpoint names follow the topic name rules. A
 * checkpoint belongs to one group and its name is unique within that group;
 * "checkpoint:NAME" names the given group's checkpoint, or, when no group is
 * given, the only checkpoint called NAME in any group.
 *
 * Every function returns 0 or a negative code with errmsg naming the problem
 * and the valid values; on failure nothing was written.
 */
#ifndef RN_GROUP_H
#define RN_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "client/runnel.h"     /* rn_group_target_t, rn_group_change_t */
#include "logical-queues/datadir.h"

/* rn_group_target_t (kind RN_TARGET_EARLIEST, _LATEST, _OFFSET, _TIME or
 * _CHECKPOINT, with an offset, timestamp or checkpoint name) is defined in
 * client/runnel.h. */

/* Parse earliest | latest | OFFSET (when allow_offset) | @TIMESTAMP_MS |
 * checkpoint:NAME. flag names the option in errmsg. */
int rn_group_parse_target(const char *s, const char *flag, int allow_offset,
                          rn_group_target_t *t, char *errmsg);

/* Commit offset for (group, topic, queue): RN_ERANGE unless it lies in
 * [log_start, high_watermark] ("offset 9 is outside topic 't' queue 0's
 * range [0, 5]"). Creates the group when absent. */
int rn_group_commit(rn_datadir_t *d, const char *group, const char *topic, uint32_t queue,
                    int64_t offset, char *errmsg);

/* Commit several offsets (positions a consumer reached) in one transaction. */
int rn_group_commit_offsets(rn_datadir_t *d, const char *group, const rn_meta_offset_t *v,
                            size_t n, char *errmsg);

/* rn_group_change_t, one offset a reset changed (before/after -1 = none), is
 * defined in client/runnel.h. */

/* Reset an existing group's offsets on topic (NULL: on every topic it has
 * offsets for, or, to a checkpoint, every topic the checkpoint holds) to
 * `to` (not RN_TARGET_OFFSET): earliest/latest/time resolve per queue (with a
 * topic: every queue of it); a checkpoint makes the group's offsets on those
 * topics exactly the checkpoint's. Every new offset is checked against its
 * queue's range first; then one transaction writes them all. *changes
 * (malloc'd, caller frees) lists every offset compared, in topic/queue order. */
int rn_group_reset(rn_datadir_t *d, const char *group, const char *topic,
                   const rn_group_target_t *to, rn_group_change_t **changes, size_t *n,
                   char *errmsg);

/* Where a consumer of (topic, queue) starts: from a checkpoint target, the
 * checkpoint's offset (queues it lacks: the log start); else the group's
 * committed offset when group != NULL and it has one; else `from` resolved.
 * A stored offset outside the queue's range is RN_ERANGE naming the range.
 * *source (may be NULL) says which: "checkpoint", "group" or "start". */
typedef struct rn_group_start {
    const char             *group;       /* NULL: none */
    rn_group_target_t       from;
    rn_meta_checkpoint_t    cp;          /* filled by rn_group_start_prepare */
    rn_meta_offset_t       *cp_offsets;  /* ditto; owned */
    size_t                  ncp;
    rn_meta_offset_t       *offsets;     /* the group's offsets on the topic; owned */
    size_t                  noffsets;
} rn_group_start_t;

/* Read what rn_group_start_offset needs for topic: the checkpoint named by
 * s->from (in s->group, or unique) and the group's offsets. */
int  rn_group_start_prepare(rn_datadir_t *d, rn_group_start_t *s, int64_t topic_id,
                            char *errmsg);
int  rn_group_start_offset(rn_datadir_t *d, const rn_group_start_t *s, rn_datadir_queue_t *q,
                           int64_t *offset, const char **source, char *errmsg);
void rn_group_start_free(rn_group_start_t *s);

#endif
