/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* D-Bus names of the broker API (fixed; see dbus/org.sbx.Broker1.xml). */
#define SBX_BUS_NAME "org.sbx.Broker1"
#define SBX_BUS_PATH "/org/sbx/Broker1"
#define SBX_BUS_IFACE "org.sbx.Broker1"
#define SBX_JOB_PREFIX "/org/sbx/Broker1/job"
#define SBX_JOB_IFACE "org.sbx.Job1"

#define SBX_ERROR_INVALID_INPUT "org.sbx.Error.InvalidInput"
#define SBX_ERROR_CODE_VALIDATION "org.sbx.Error.CodeValidation"
#define SBX_ERROR_ENV_VALIDATION "org.sbx.Error.EnvVarValidation"
#define SBX_ERROR_CAPACITY "org.sbx.Error.Capacity"
#define SBX_ERROR_VM_TRANSIENT "org.sbx.Error.VmTransient"
#define SBX_ERROR_VM_BOOT_TIMEOUT "org.sbx.Error.VmBootTimeout"
#define SBX_ERROR_INTERNAL "org.sbx.Error.Internal"
#define SBX_ERROR_ACCESS_DENIED "org.sbx.Error.AccessDenied"
#define SBX_ERROR_CANCELLED "org.sbx.Error.Cancelled"
/* sbx-netd is not running or refused the VM's network policy: networked requests fail closed. */
#define SBX_ERROR_NETWORK_UNAVAILABLE "org.sbx.Error.NetworkUnavailable"

/* Sessions: org.sbx.Broker1.OpenSession() returns SBX_SESSION_PREFIX "/_<id>". */
#define SBX_SESSION_PREFIX "/org/sbx/Broker1/session"
#define SBX_SESSION_IFACE "org.sbx.Session1"
#define SBX_ERROR_SESSION_CLOSED "org.sbx.Error.SessionClosed"
#define SBX_ERROR_INVALID_PATH "org.sbx.Error.InvalidPath"
#define SBX_ERROR_NOT_FOUND "org.sbx.Error.NotFound"
#define SBX_ERROR_FILE_TOO_LARGE "org.sbx.Error.FileTooLarge"
#define SBX_ERROR_FILE_IO "org.sbx.Error.FileIO"
