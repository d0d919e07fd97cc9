#!/usr/bin/env bash
# Regenerates the seed corpora in tests/fuzz/corpus/ (committed; run this only
# to change the seeds). Seeds are small valid inputs and a few near misses, so
# the fuzzers start from the interesting branches instead of finding them.
# Inputs found by fuzzing, crashes included, go in by hand as crash-<what>.
set -euo pipefail
mkdir -p "$(dirname "$0")/corpus" && cd "$(dirname "$0")/corpus"

u32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)); }
# seed DIR NAME BYTES: writes BYTES, backslash escapes (\xHH, \0) expanded.
seed() { mkdir -p "$1" && printf %b "$3" >"$1/$2"; }
size() { printf %b "$1" | wc -c; }
# packet CODE BODY: a startup packet (length, version or request code, body).
packet() { printf '%s' "$(u32 $((8 + $(size "$2"))))$(u32 "$1")$2"; }
# message TYPE BODY: a v3 message (type, length including itself, body).
message() { printf '%s' "$1$(u32 $((4 + $(size "$2"))))$2"; }

# fuzz_startup: byte 0 picks where the message stream is split; then a startup
# packet; then v3 messages.
params='user\0alice\0database\0app\0application_name\0psql\0\0'
startup=$(packet 196608 "$params")
ssl=$(packet 80877103 '')
s=fuzz_startup
seed $s startup "\x05$startup"
seed $s startup-then-messages "\x07$startup$(message Q 'SELECT 1\0')$(message X '')"
seed $s startup-minor-1 "\x00$(packet 196609 "$params")"
seed $s startup-pq-option "\x00$(packet 196608 'user\0bob\0_pq_.x\0y\0\0')"
seed $s startup-v2 "\x00$(packet 131072 "$params")"
seed $s startup-no-terminator "\x00$(packet 196608 'user\0alice\0database\0app\0')"
seed $s startup-unterminated-value "\x00$(packet 196608 'user\0alice')"
seed $s ssl-request "\x00$ssl"
seed $s ssl-then-garbage "\x03$ssl\xff\xfe\x00\x01GET / HTTP/1.1\r\n"
seed $s gssenc-request "\x00$(packet 80877104 '')"
seed $s cancel-request "\x00$(packet 80877102 "$(u32 4242)$(u32 0xdeadbeef)")"
seed $s cancel-request-short "\x00$(packet 80877102 "$(u32 4242)")"
seed $s length-0 "\x00$(u32 0)"
seed $s length-3 "\x00$(u32 3)$(u32 196608)"
seed $s length-2p31 "\x00$(u32 2147483647)$(u32 196608)"
seed $s length-2p32 "\x00$(u32 4294967295)$(u32 196608)"
seed $s message-bad-length "\x02${ssl}Q$(u32 2)"
seed $s message-too-long "\x02${ssl}Q$(u32 16777216)abc"
seed $s message-split-body "\x0b$ssl$(message P '\0SELECT 1\0\0\0')$(message S '')"

# fuzz_control_request: one line, as sluicectl sends it.
c=fuzz_control_request
for cmd in status pools clients servers teardown pause resume reload shutdown; do
  seed $c "$cmd" "{\"cmd\": \"$cmd\"}"
done
seed $c drain '{"cmd": "drain"}'
seed $c drain-timeout '{"cmd":"drain","timeout_s":10.5}'
seed $c drain-null '{"cmd": "drain", "timeout_s": null}'
seed $c drain-negative '{"cmd": "drain", "timeout_s": -1}'
seed $c drain-huge '{"cmd": "drain", "timeout_s": 1e308}'
seed $c drain-string '{"cmd": "drain", "timeout_s": "10"}'
seed $c unknown-command '{"cmd": "frobnicate"}'
seed $c unknown-argument '{"cmd": "status", "verbose": true}'
seed $c cmd-not-string '{"cmd": ["status"]}'
seed $c not-object '["status"]'
seed $c nested '[[[[[[[[[[[[[[[[{"cmd":"status"}]]]]]]]]]]]]]]]]'
seed $c unterminated '{"cmd": "stat'
seed $c escapes '{"cmd": "st\\u0061tus", "\\"k": "\\ud83d\\ude00"}'
seed $c binary '{\x00\xff\xfe"cmd"\x01}'

# fuzz_config: the config file, JSON with comments.
f=fuzz_config
seed $f empty-object '{}'
seed $f comments-only '// nothing\n/* still nothing */ {} // end\n'
seed $f full '{
  // Where clients connect.
  "listen": { "unix_socket_dir": "/tmp/sluice", /* short */ "port": 7432, "tcp": "127.0.0.1:7433" },
  "control": { "socket": "/tmp/sluice/ctl.sock", "group": "dba" },
  "pool": { "pool_size": 8, "pool_mode": "session", "query_wait_timeout_ms": 1000,
            "server_connect_timeout_ms": 2000, "server_idle_timeout_s": 30, "server_lifetime_s": 0,
            "idle_transaction_timeout_ms": 500, "client_idle_timeout_s": 60,
            "reset_query": "DISCARD ALL", "max_prepared_statements": 0 },
  "databases": {
    "app": { "conninfo": "host=/var/run/postgresql dbname=app" },
    "other": { "conninfo": "port=5433 user=x", "pool_size": 2, "pool_mode": "transaction" }
  },
  "teardown": { "sla_ms": 7, "max_ms": 2000 },
  "drain": { "timeout_s": 0 },
  "auth": { "type": "peer" },
  "limits": { "max_client_conn": 50, "startup_packet_max": 4096, "message_max": 1048576,
              "login_timeout_ms": 3000, "control_request_max": 1024 },
  "diagnostics": { "slow_callback_ms": 20 },
  "log_level": "debug"
}\n'
seed $f ipv6-tcp '{"listen": {"tcp": "[::1]:6432"}}'
seed $f bad-tcp '{"listen": {"tcp": "::1:6432"}}'
seed $f bad-conninfo '{"databases": {"app": {"conninfo": "host='"'"'unterminated"}}}'
seed $f wrong-types '{"pool": {"pool_size": "8", "pool_mode": 1}, "listen": []}'
seed $f fractional '{"pool": {"pool_size": 8.5}, "drain": {"timeout_s": -1}}'
seed $f duplicate-key '{"pool": {"pool_size": 1, "pool_size": 2}}'
seed $f unknown-key '{"pool": {"pool_sise": 8}}'
seed $f dotted-database '{"databases": {"a.b": {"conninfo": ""}}}'
seed $f unterminated-comment '{"listen": {} /* never closed'
seed $f not-object '[1, 2, 3]'
seed $f truncated '{"listen": {"port": 64'

# fuzz_reply_ledger: byte 0 picks the split; 16 request bytes (low nibble: type
# P B D E C S Q F H by index mod 9, high nibble: kind mod 6); then server replies,
# also read as a client message and as SQL.
r=fuzz_reply_ledger
plain='\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x05'
seed $r extended-replies "\x05$plain$(message 1 '')$(message 2 '')$(message n '')$(message C 'SELECT 1\0')$(message Z 'I')"
seed $r injected-parse "\x03\x10\x01\x03\x05$plain$(message 1 '')$(message 2 '')$(message C 'SELECT 1\0')$(message Z 'I')"
seed $r error-skips "\x09\x41\x51\x21\x03\x05$plain$(message E 'SERROR\0C22012\0Mboom\0\0')$(message Z 'E')"
seed $r client-parse "\x02$plain$(message P 's1\0SELECT 1\0\0\0')"
seed $r client-bind "\x02$plain$(message B '\0s1\0\0\0\0\0\0\0')"
seed $r sql-prepare "\x00${plain}PREPARE x AS SELECT 1; /* c */ DEALLOCATE ALL"

# fuzz_scram: byte 0 flags (1 TLS, 2 known role, 4 PLUS chosen, 8 lying length); then
# client-first '\n' client-final. The finals carry the right proof for password "pencil" and the
# harness's fixed server nonce, so the fuzzer starts past the proof check.
s=fuzz_scram
seed $s known-ok "\x02n,,n=,r=abc\nc=biws,r=abcfuzznonce,p=rZIuCHfWpXg3vGR735COwNBwY086kKq94IUqU1WVuS0="
seed $s plus-ok "\x07p=tls-server-end-point,,n=,r=abc\nc=cD10bHMtc2VydmVyLWVuZC1wb2ludCws3q2+7w==,r=abcfuzznonce,p=rTfR/ldgXpEQyclFPwnmKNzSg8gEXQO4yn2WDVIJBEg="
seed $s mock "\x00n,,n=nobody,r=abc\nc=biws,r=abcfuzznonce,p=rZIuCHfWpXg3vGR735COwNBwY086kKq94IUqU1WVuS0="
seed $s extension "\x02n,,n=,r=abc,x=ext\nc=biws,r=abcfuzznonce,e=1,p=AAAA"
seed $s y-on-tls "\x03y,,n=,r=abc\nc=eSws,r=abcfuzznonce,p=AAAA"
seed $s authzid "\x02n,a=bob,n=,r=abc\n"
seed $s lying-length "\x0an,,n=,r=abc\n"

# fuzz_scram_client: byte 0 flags (1 the mechanism list is the first line); then server-first
# '\n' server-final. The first seed's signature is right for the harness's all-zero keys and fixed
# client nonce, so the fuzzer starts past the signature check.
s=fuzz_scram_client
seed $s ok "\x00r=fuzznonceSERVER,s=c2FsdA==,i=4096\nv=fhprlgwf23qH+Cod7EXHhWsP3lEFDqY2sFdGadp9874="
seed $s server-error "\x00r=fuzznonceSERVER,s=c2FsdA==,i=4096\ne=invalid-proof"
seed $s mechanisms "\x01SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00\nr=fuzznonceX,s=c2FsdA==,i=1,x=ext\nv=AAAA"
seed $s extension "\x00m=ext,r=fuzznonceSERVER,s=c2FsdA==,i=4096\n"

# fuzz_hba: pg_hba.conf lines.
s=fuzz_hba
seed $s rules '# comment\nlocal all all peer\nlocal app,"my db" +grp md5\nlocal sameuser all scram-sha-256\nhost all all 10.0.0.0/8 md5\nhost all all 192.168.0.0 255.255.0.0 trust\nhostssl all all ::1/128 cert\nhostnossl all all all reject\n'
seed $s bad-mask 'host all all 10.0.0.0/40 trust\n'
seed $s unterminated 'local "all all trust\n'

# fuzz_auth_file: userlist.txt lines.
s=fuzz_auth_file
seed $s users '; comment\n"alice" "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="\n"bo""b" "md500000000000000000000000000000000" rest\n'
seed $s plain '"alice" "pencil"\n'
