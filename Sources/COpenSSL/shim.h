#ifndef SWIFT_OPENSSL_FLI_SHIM_H
#define SWIFT_OPENSSL_FLI_SHIM_H
/* The OpenSSL headers the package binds. Deprecation attributes are suppressed for the Swift
   import only: the generated wrappers carry their own @available(deprecated) markers, taken from
   the headers by codegen, so users still see them without a flood of warnings from our own code. */
#if !defined(OPENSSL_SUPPRESS_DEPRECATED) && !defined(FLI_CODEGEN_KEEP_DEPRECATED)
#define OPENSSL_SUPPRESS_DEPRECATED 1
#endif
#include <openssl/ssl.h>
#include <openssl/tls1.h>
#include <openssl/dtls1.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <openssl/dh.h>
#include <openssl/rsa.h>
#include <openssl/ec.h>
#include <openssl/bn.h>
#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/ocsp.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/encoder.h>
#endif
