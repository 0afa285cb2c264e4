#!/usr/bin/env bash
# Makes a throwaway PKI for tests and demos: a CA, and a server certificate
# signed by it for capnet.test, localhost and the test addresses.
#   scripts/test-pki.sh DIR
# Writes DIR/ca.pem, DIR/server.pem (leaf then CA), DIR/server.key.
set -euo pipefail
dir=${1:?usage: test-pki.sh DIR}
mkdir -p "$dir"
cd "$dir"
[ -s server.pem ] && [ -s server.key ] && [ -s ca.pem ] && exit 0
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
  -subj "/CN=capnet test CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
  -subj "/CN=capnet.test" 2>/dev/null
cat > leaf.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:capnet.test,DNS:localhost,IP:127.0.0.1,IP:10.0.0.1,IP:10.0.0.2,IP:10.77.0.1,IP:10.77.0.2
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -out leaf.pem -days 30 -extfile leaf.ext 2>/dev/null
cat leaf.pem ca.pem > server.pem
rm -f server.csr leaf.ext ca.srl
