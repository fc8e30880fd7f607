#!/bin/sh
# phone-1001: call extension 1002 every $INTERVAL seconds; each call plays
# 5 s of speech, then hangs up. sipp's own screen goes nowhere; one line per
# call says how it went.
set -u
MY_IP=${MY_IP:?the phone's address on the compose network}
ASTERISK=${ASTERISK:-172.30.0.10:5060}
CALLEE=${CALLEE:-1002}
INTERVAL=${INTERVAL:-60}
sleep "${FIRST_CALL_AFTER:-5}"
while true; do
    if sipp -sf call.xml -s "$CALLEE" -i "$MY_IP" -p 5060 -mi "$MY_IP" -m 1 -nostdin \
            -timeout 60s -timeout_error -trace_err -error_file errors.log \
            "$ASTERISK" >/dev/null 2>&1; then
        echo "$(date -u +%FT%TZ) call to $CALLEE done"
    else
        echo "$(date -u +%FT%TZ) call to $CALLEE failed:"
        tail -n 20 errors.log 2>/dev/null
    fi
    sleep "$INTERVAL"
done
