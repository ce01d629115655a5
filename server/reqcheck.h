/*
 * reqcheck.h — checks on a request's wire bytes that unpacking cannot make.
 *
 * protobuf-c unpacks a string field into a NUL-terminated char *, so a
 * string holding a NUL byte ("a\0b") would reach the handlers cut short
 * ("a"). rn_reqcheck_strings walks the packed bytes along the message's
 * descriptor and refuses any string field, at any depth, that holds a NUL.
 * bytes fields (record batches, blobs) are not strings and are not checked.
 */
#ifndef RN_REQCHECK_H
#define RN_REQCHECK_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* 0 when no string field of the message desc packed in buf[0..n) holds a NUL
 * byte; else RN_EINVAL with errmsg (RN_ERRMSG_SIZE, may be NULL) naming the
 * field and the byte's position in it, e.g. "topic name contains a NUL byte
 * at position 1 (CreateTopicRequest.name)". Bytes that are not a valid
 * message also give RN_EINVAL; the front unpacks first, so it never sees
 * that. Nesting is followed to at most RN_REQCHECK_MAX_DEPTH messages. */
#define RN_REQCHECK_MAX_DEPTH 32
int rn_reqcheck_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t n,
                        char *errmsg);

#endif
