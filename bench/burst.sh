#!/usr/bin/env bash
# A quick check of one measure of bench/run.sh: N targets fire in the same second (pacing off);
# prints the delay of each StartExecution's arrival at the local endpoint after the slot
# (p50/p99/max, ms) and the daemon's peak RSS. Usage: bash bench/burst.sh 10000
# Uses target/release/orchestrator (build it first); talks to 127.0.0.1 only.
set -u
N=${1:-10000}; PORT=$((4800 + RANDOM % 100))
BIN="$(cd "$(dirname "$0")/.." && pwd)/target/release/orchestrator"
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
"$BIN" sandbox --listen 127.0.0.1:$PORT --job-pending 5 --job-running 60 > sb.log 2>&1 & SB=$!
sleep 1
python3 - $N $PORT <<'PY'
import datetime, sys
n=int(sys.argv[1]); port=sys.argv[2]
t=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)+datetime.timedelta(seconds=15)
lines=['state_machine_arn = "arn:aws:states:us-east-1:123456789012:stateMachine:b"',f'endpoint_url = "http://127.0.0.1:{port}"','start_rate = 100000','start_burst = 100000','']
for i in range(n):
    lines += ['[[backup]]', f'name = "t{i}"', f'resource_arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-{i:017x}"', f'schedule = "{t.second} {t.minute} {t.hour} * * *"', '']
open('c.toml','w').write('\n'.join(lines))
open('slot','w').write(str(int(t.timestamp()*1000)))
PY
AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true RUST_LOG=${RUST_LOG:-info} "$BIN" --config c.toml > d.log 2>&1 & DP=$!
sleep 20
python3 - $PORT <<'PY'
import json, urllib.request, sys
port=sys.argv[1]; slot=int(open('slot').read())
st=json.load(urllib.request.urlopen(f'http://127.0.0.1:{port}/_sandbox/start-times'))
d=sorted(s['received_at_ms']-slot for s in st if s['outcome']=='accepted')
pick=lambda q: d[min(len(d)-1,int(q*len(d)))]
print(f"n={len(d)} min={d[0]} p50={pick(0.5)} p99={pick(0.99)} max={d[-1]}")
PY
grep VmHWM /proc/$DP/status
kill $DP $SB; wait 2>/dev/null
