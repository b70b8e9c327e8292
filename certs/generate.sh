#!/usr/bin/env bash
# Generate DEVELOPMENT / TEST certificates for Sluice's TLS listeners.
#
#   certs/generate.sh OUTDIR
#
# Never use these in production: the CA key sits next to the certificates,
# unencrypted. See certs/README.md for what each file is for.
#
# Every run regenerates everything (new keys, new CA), so it is idempotent:
# OUTDIR always ends up holding one consistent set. Files are built in a
# staging directory inside OUTDIR and moved into place only once all of them
# succeeded. Quiet unless something fails. Needs only the `openssl` CLI (3.0+).
set -euo pipefail

usage() {
    echo "usage: $0 OUTDIR" >&2
    exit 2
}
[[ $# -eq 1 && -n $1 ]] || usage

OPENSSL=${OPENSSL:-openssl}
command -v "$OPENSSL" >/dev/null 2>&1 || {
    echo "$0: '$OPENSSL' not found (install openssl)" >&2
    exit 1
}

OUTDIR=$1
mkdir -p -- "$OUTDIR"
OUTDIR=$(cd -- "$OUTDIR" && pwd)

umask 077 # keys are private from the moment they exist
STAGE=$(mktemp -d "$OUTDIR/.generate.XXXXXX")
trap 'rm -rf -- "$STAGE"' EXIT
LOG=$STAGE/openssl.log

# Run a command with its output captured; show it only if the command fails.
run() {
    if ! "$@" >"$LOG" 2>&1; then
        echo "$0: command failed: $*" >&2
        cat "$LOG" >&2
        exit 1
    fi
}

# One self-contained OpenSSL config, so the system openssl.cnf does not
# change what ends up in the certificates.
CNF=$STAGE/openssl.cnf
cat >"$CNF" <<'EOF'
[ req ]
distinguished_name = req_dn
prompt             = no
utf8               = yes
string_mask        = utf8only
[ req_dn ]
CN = unused

[ v3_ca ]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ server_ext ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ client_ext ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectAltName         = email:${ENV::SLUICE_CERT_CN}@example.com, URI:urn:device:${ENV::SLUICE_CERT_CN}
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

# Minimal `openssl ca` setup, used only for the expired certificate:
# OpenSSL 3.0's `x509 -req` cannot set an explicit notBefore/notAfter.
[ ca ]
default_ca = dev_ca
[ dev_ca ]
dir              = ${ENV::SLUICE_CA_DIR}
database         = $dir/index.txt
new_certs_dir    = $dir/newcerts
certificate      = $dir/ca.pem
private_key      = $dir/ca.key
rand_serial      = yes
default_md       = sha256
policy           = policy_any
unique_subject   = no
copy_extensions  = none
x509_extensions  = client_ext
email_in_dn      = no
preserve         = yes
[ policy_any ]
commonName = supplied
EOF
# Referenced by the config; must be set even when the section is unused.
export SLUICE_CERT_CN=unused SLUICE_CA_DIR=$STAGE

# new_key NAME: EC P-256 private key, PKCS#8 PEM ("BEGIN PRIVATE KEY").
new_key() {
    run "$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -out "$STAGE/$1.key"
}

# new_ca NAME CN
new_ca() {
    new_key "$1"
    run "$OPENSSL" req -new -x509 -config "$CNF" -extensions v3_ca \
        -key "$STAGE/$1.key" -subj "/CN=$2" -sha256 -days 3650 \
        -set_serial "0x$("$OPENSSL" rand -hex 16)" \
        -out "$STAGE/$1.pem"
}

# new_leaf NAME CN EXTSECTION CANAME DAYS
new_leaf() {
    local name=$1 cn=$2 ext=$3 ca=$4 days=$5
    new_key "$name"
    run "$OPENSSL" req -new -config "$CNF" -key "$STAGE/$name.key" \
        -subj "/CN=$cn" -out "$STAGE/$name.csr"
    SLUICE_CERT_CN=$cn run "$OPENSSL" x509 -req -in "$STAGE/$name.csr" \
        -CA "$STAGE/$ca.pem" -CAkey "$STAGE/$ca.key" \
        -set_serial "0x$("$OPENSSL" rand -hex 16)" \
        -sha256 -days "$days" -extfile "$CNF" -extensions "$ext" \
        -out "$STAGE/$name.pem"
}

new_ca ca "Sluice Dev CA"
new_leaf server localhost server_ext ca 825
new_leaf client device-1 client_ext ca 825
new_leaf client2 device-2 client_ext ca 825
cat "$STAGE/server.pem" "$STAGE/ca.pem" >"$STAGE/server-chain.pem"

# Expired client certificate: valid only on 2020-01-01.
new_key expired
run "$OPENSSL" req -new -config "$CNF" -key "$STAGE/expired.key" \
    -subj "/CN=device-expired" -out "$STAGE/expired.csr"
mkdir "$STAGE/newcerts"
: >"$STAGE/index.txt"
SLUICE_CERT_CN=device-expired run "$OPENSSL" ca -batch -notext -config "$CNF" \
    -startdate 20200101000000Z -enddate 20200102000000Z \
    -in "$STAGE/expired.csr" -out "$STAGE/expired.pem"

# A second, unrelated CA and a client certificate it signed.
new_ca other-ca "Sluice Other Dev CA (untrusted)"
new_leaf other-client intruder client_ext other-ca 825

# Sanity check before anything replaces the previous set.
run "$OPENSSL" verify -x509_strict -purpose sslserver -CAfile "$STAGE/ca.pem" \
    "$STAGE/server.pem"
run "$OPENSSL" verify -x509_strict -purpose sslclient -CAfile "$STAGE/ca.pem" \
    "$STAGE/client.pem" "$STAGE/client2.pem"

FILES=(ca server client client2 expired other-ca other-client)
for f in "${FILES[@]}"; do
    chmod 600 "$STAGE/$f.key"
    chmod 644 "$STAGE/$f.pem"
done
chmod 644 "$STAGE/server-chain.pem"
for f in "${FILES[@]}"; do
    mv -f -- "$STAGE/$f.key" "$STAGE/$f.pem" "$OUTDIR/"
done
mv -f -- "$STAGE/server-chain.pem" "$OUTDIR/"
