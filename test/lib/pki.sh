# A throw-away PKI for the tests, made with the openssl CLI (sourced).
#
#   pki_ca DIR [NAME]           DIR/NAME.pem + DIR/NAME.key: a CA (default "ca")
#   pki_cert DIR NAME SAN [CA]  DIR/NAME.pem + DIR/NAME.key signed by DIR/CA
#                               (default "ca"); SAN is openssl's subjectAltName
#                               value ("DNS:a,IP:127.0.0.1"), "" for none
#                               (then NAME is only the CN)
# Keys are P-256 (fast), certificates valid for 2 days, usable as client
# and server certificates.  Keys are 0600.  Returns non-zero, with
# openssl's message on stderr, when a step fails.

pki_ca() {
	local dir=$1 name=${2:-ca}
	mkdir -p "$dir" || return 1
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-keyout "$dir/$name.key" -out "$dir/$name.pem" -days 2 \
		-subj "/CN=rdmig test $name" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$dir/$name.err" ||
		{ cat "$dir/$name.err" >&2; return 1; }
	chmod 600 "$dir/$name.key"
	rm -f "$dir/$name.err"
}

pki_cert() {
	local dir=$1 name=$2 san=$3 ca=${4:-ca} ext
	ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth"
	[ -n "$san" ] && ext="$ext
subjectAltName=$san"
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
		-keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$name" \
		2>"$dir/$name.err" &&
		openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca.key" \
			-CAcreateserial -days 2 -out "$dir/$name.pem" \
			-extfile <(printf '%s\n' "$ext") 2>>"$dir/$name.err" ||
		{ cat "$dir/$name.err" >&2; return 1; }
	chmod 600 "$dir/$name.key"
	rm -f "$dir/$name.csr" "$dir/$name.err"
}

# pki_tls_args DIR NAME: the --tls-cert/--tls-key/--tls-ca options for NAME's
# certificate and the CA DIR/ca.pem.
pki_tls_args() {
	echo "--tls-cert $1/$2.pem --tls-key $1/$2.key --tls-ca $1/ca.pem"
}

# pki_agents DIR SOURCE_ADDR DEST_ADDR: a CA and the two agents' certificates
# of a handover test: "source" (SAN DNS:source.rdmig.test and SOURCE_ADDR)
# and "dest" (SAN DNS:dest.rdmig.test and DEST_ADDR, the address the
# source hands over to).
pki_agents() {
	pki_ca "$1" &&
		pki_cert "$1" source "DNS:source.rdmig.test,IP:$2" &&
		pki_cert "$1" dest "DNS:dest.rdmig.test,IP:$3"
}
