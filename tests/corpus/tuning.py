"""The tuning corpus: the lines detectors are tuned on (figures on it are not the ones to report).

HDFS, Hadoop MapReduce/YARN, Spark, ZooKeeper, OpenSSH, Linux syslog (RFC 3164), Apache access and
error logs, HealthApp, logfmt, JSON application logs and Python tracebacks; values from
``tests.corpus.values``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from tests.corpus import values as v
from tests.corpus._build import Gen, Line, Spec, lines

__all__ = ["SYSTEMS", "tuning_lines"]

_MON = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_WORDS = ["alpha", "ledger", "orders", "cart", "search", "report", "invoice", "profile", "sync", "export"]
_CLASSES = [
    "org.apache.hadoop.mapreduce.v2.app.MRAppMaster",
    "org.apache.hadoop.yarn.client.RMProxy",
    "org.apache.hadoop.mapreduce.v2.app.rm.RMContainerAllocator",
    "org.apache.hadoop.ipc.Client",
    "org.apache.hadoop.mapred.TaskAttemptListenerImpl",
    "org.apache.hadoop.yarn.event.AsyncDispatcher",
]

SYSTEMS: dict[str, list[str]] = {
    "hdfs": [
        "{yymmdd} {hhmmss} {n3} INFO dfs.DataNode$PacketResponder: PacketResponder {n1} for block blk_{blk} terminating",
        "{yymmdd} {hhmmss} {n2} INFO dfs.DataNode$DataXceiver: Receiving block blk_{blk} src: /{ipv4}:{port} dest: /{ipv4}:50010",
        "{yymmdd} {hhmmss} {n3} INFO dfs.DataNode$PacketResponder: Received block blk_{blk} of size {size8} from /{ipv4}",
        "{yymmdd} {hhmmss} {n2} INFO dfs.FSNamesystem: BLOCK* NameSystem.delete: blk_{blk} is added to invalidSet of {ipv4}:50010",
        "{yymmdd} {hhmmss} {n2} INFO dfs.DataBlockScanner: Verification succeeded for blk_{blk}",
        "{yymmdd} {hhmmss} {n2} INFO dfs.DataNode: {pii}",
    ],
    "hadoop": [
        "{ymd} {hms},{ms} INFO [main] {klass}: Created MRAppMaster for application appattempt_{n13}_{n4}_{n6}",
        "{ymd} {hms},{ms} INFO [main] org.apache.hadoop.yarn.client.RMProxy: Connecting to ResourceManager at msra-sa-{n2}/{ipv4}:{port}",
        "{ymd} {hms},{ms} INFO [RMCommunicator Allocator] {klass}: After Scheduling: PendingReds:0 ScheduledMaps:{n2} ScheduledReds:0 AssignedMaps:{n1} AssignedReds:0 CompletedMaps:0 CompletedReds:0 ContAlloc:{n1} ContRel:0 HostLocal:0 RackLocal:0",
        "{ymd} {hms},{ms} WARN [LeaseRenewer:msrabi@msra-sa-{n2}:9000] org.apache.hadoop.ipc.Client: Address change detected. Old: msra-sa-{n2}/{ipv4}:9000 New: msra-sa-{n2}:9000",
        "{ymd} {hms},{ms} INFO [IPC Server handler {n1} on {port}] org.apache.hadoop.mapred.TaskAttemptListenerImpl: Progress of TaskAttempt attempt_{n13}_{n4}_m_{n6}_0 is : 0.{n6}",
        "{ymd} {hms},{ms} INFO [AsyncDispatcher event handler] {klass}: {pii}",
        "{ymd} {hms},{ms} INFO [main] org.apache.hadoop.mapreduce.Job: Counters: {n2} File System Counters FILE: Number of bytes read={n8} FILE: Number of bytes written={n9} HDFS: Number of read operations={n3}",
        "{ymd} {hms},{ms} INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: Kind: YARN_AM_RM_TOKEN, Service: , Ident: (appAttemptId { application_id { id: {n2} cluster_timestamp: {n13} } attemptId: 1 } keyId: -{n9})",
        "{ymd} {hms},{ms} INFO [main] org.apache.hadoop.mapreduce.v2.app.job.impl.TaskImpl: task_{n13}_{n4}_m_{n6} Task Transitioned from NEW to SCHEDULED",
        "{ymd} {hms},{ms} INFO [main] org.apache.hadoop.security.token.Token: token=Token{kind: HDFS_DELEGATION_TOKEN, service: {ipv4}:8020}",
    ],
    "spark": [
        "{ymd2} {hms} INFO executor.CoarseGrainedExecutorBackend: Registered signal handlers for [TERM, HUP, INT]",
        "{ymd2} {hms} INFO spark.SecurityManager: SecurityManager: authentication disabled; ui acls disabled; users with view permissions: Set(yarn, curi); users with modify permissions: Set(yarn, curi)",
        "{ymd2} {hms} INFO storage.DiskBlockManager: Created local directory at /opt/hdfs/nodemanager/usercache/curi/appcache/application_{n13}_{n4}/blockmgr-{uuid}",
        "{ymd2} {hms} INFO executor.CoarseGrainedExecutorBackend: Connecting to driver: spark://CoarseGrainedScheduler@{ipv4}:{port}",
        "{ymd2} {hms} INFO broadcast.TorrentBroadcast: Reading broadcast variable {n2} took {n2} ms",
        "{ymd2} {hms} WARN scheduler.TaskSetManager: {pii}",
        "{ymd2} {hms} INFO {camelpkg}: Registered {camelid} with {n2} executors (memory {n4}.{n1} MB, {n5} tasks)",
        "{ymd2} {hms} INFO scheduler.DAGScheduler: ResultStage {n2} (collect at {camelid}.scala:{n3}) finished in {n1}.{n3} s",
    ],
    "zookeeper": [
        "{ymd} {hms},{ms} - INFO  [QuorumPeer[myid={n1}]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: {n4}",
        "{ymd} {hms},{ms} - INFO  [/{ipv4}:3888:QuorumCnxManager$Listener@493] - Received connection request /{ipv4}:{port}",
        "{ymd} {hms},{ms} - WARN  [SendWorker:{n3}:QuorumCnxManager$SendWorker@688] - Send worker leaving thread",
        "{ymd} {hms},{ms} - INFO  [NIOServerCxn.Factory:0.0.0.0/0.0.0.0:2181:ZooKeeperServer@839] - Client attempting to establish new session at /{ipv4}:{port}",
        "{ymd} {hms},{ms} - INFO  [CommitProcessor:{n1}:ZooKeeperServer@595] - Established session 0x{hex14} with negotiated timeout {n5} for client /{ipv4}:{port}",
        "{ymd} {hms},{ms} - WARN  [NIOServerCxn.Factory:0.0.0.0/0.0.0.0:2181:NIOServerCnxn@349] - {pii}",
    ],
    "openssh": [
        "{mon} {day} {hms} LabSZ sshd[{pid}]: reverse mapping checking getaddrinfo for {host} [{ipv4}] failed - POSSIBLE BREAK-IN ATTEMPT!",
        "{mon} {day} {hms} LabSZ sshd[{pid}]: Invalid user {user} from {ipv4}",
        "{mon} {day} {hms} LabSZ sshd[{pid}]: Failed password for invalid user {user} from {ipv4} port {port} ssh2",
        "{mon} {day} {hms} LabSZ sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ipv4}  user=root",
        "{mon} {day} {hms} LabSZ sshd[{pid}]: Received disconnect from {ipv4}: 11: Bye Bye [preauth]",
        "{mon} {day} {hms} LabSZ sshd[{pid}]: Connection closed by {ipv4} [preauth]",
        "{mon} {day} {hms} LabSZ sshd[{pid}]: error: Received disconnect from {ipv6}: 3: com.jcraft.jsch.JSchException: Auth fail [preauth]",
    ],
    "linux": [
        "{mon} {day} {hms} combo sshd(pam_unix)[{pid}]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost={ipv4}",
        "{mon} {day} {hms} combo su(pam_unix)[{pid}]: session opened for user cyrus by (uid=0)",
        "{mon} {day} {hms} combo ftpd[{pid}]: connection from {ipv4} () at {dow} {mon} {day} {hms} 2005",
        "{mon} {day} {hms} combo kernel: eth0: link up, 100Mbps, full-duplex, lpa 0x{hex4}",
        "{mon} {day} {hms} combo dhcpd: DHCPACK on {ipv4} to {mac} via eth1",
        "{mon} {day} {hms} combo logrotate: ALERT exited abnormally with [1]",
        "{mon} {day} {hms} combo app[{pid}]: {pii}",
        "{mon} {day} {hms} combo kernel: Memory: {n6}k/{n7}k available ({n4}k kernel code, {n5}k reserved, {n4}k data, {n3}k init, {n6}k highmem)",
        "{mon} {day} {hms} combo kernel: [{n5}.{n6}] EXT4-fs (sda{n1}): mounted filesystem with ordered data mode. Opts: (null)",
        "{mon} {day} {hms} combo kernel: ACPI: RSDT 0x{hex8}{hex8} {n6} (v01 {acpi} {acpi} {n8} MSFT {n8})",
        "{mon} {day} {hms} combo kernel: usb {n1}-{n1}: new high-speed USB device number {n1} using ehci_hcd",
        "{mon} {day} {hms} combo vmstat: {n1} {n1} {n6} {n5} {n3} {n7} 0 0 {n2} {n3} {n4} {n4} {n1} {n1} {n2} 0 0",
        "{mon} {day} {hms} combo rpm: Installed: {pkg}-{n1}.{n1}.{n2}-{n1}.el{n1}.x86_64 {hex8}",
    ],
    "apache": [
        '{ipv4} - - [{clf}] "GET /{word}/{word}.html HTTP/1.1" {status} {size} "-" "{ua}"',
        '{ipv4} - {user} [{clf}] "POST /cgi-bin/{word}.cgi HTTP/1.0" {status} {size}',
        "[{dow} {mon} {day} {hms} 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties",
        "[{dow} {mon} {day} {hms} 2005] [error] mod_jk child workerEnv in error state {n1}",
        "[{dow} {mon} {day} {hms} 2005] [error] [client {ipv4}] Directory index forbidden by rule: /var/www/html/",
        '{ipv4} - - [{clf}] "GET /{word}?q={pii} HTTP/1.1" {status} {size} "-" "{ua}"',
        '{ipv4} - - [{clf}] "GET /{word}/ HTTP/1.1" {status} {size} {n6}',
    ],
    "healthapp": [
        "{compact}|Step_LSC|{n8}|onStandStepChanged {n4}",
        "{compact}|Step_StandReportReceiver|{n8}|onReceive action: android.intent.action.SCREEN_ON",
        "{compact}|Step_SPUtils|{n8}| getTodayTotalDetailSteps = {n13}##{n4}##{n6}##{n4}##{n5}##{n8}",
        "{compact}|Step_LSC|{n8}|processHandleBroadcastAction action:android.intent.action.SCREEN_OFF",
        "{compact}|HiH_HiSyncUtil|{n8}|{pii}",
    ],
    "logfmt": [
        'level=info ts={iso} caller=server.go:{n3} msg="request" method=GET path=/api/{word} status={status} took={n2}.{n3}ms ip={ipv4}',
        'level=error ts={iso} caller=db.go:{n2} msg="{pii}" retries={n1}',
        't={iso} lvl=info msg="HTTP Request" logger=context userId={n4} orgId=1 uname={user} method=GET path=/api/dashboards/uid/{hex8} status={status} remote_addr={ipv4} time_ms={n2} size={size}',
        "level=debug ts={iso} component=cache key=session:{hex16} ttl={n4}s build={version}",
    ],
    "json": [
        '{"time":"{iso}","level":"INFO","msg":"{pii}","request_id":"{uuid}","duration_ms":{n3}}',
        '{"timestamp":"{iso}","level":"warn","logger":"{klass}","message":"slow query","rows":{n5},"client":"{ipv4}"}',
        '{"ts":"{iso}","lvl":"info","event":"deploy","service":"{word}","version":"{version}","commit":"{hex40}"}',
        '{"ts":"{iso}","lvl":"info","event":"login","user_id":{n8},"ua":"{ua}","src":"{ipv4}"}',
    ],
    "dism": [
        "{ymd} {hms}, Info                  DISM   DISM Package Manager: PID={pid} TID={pid} Processing the top level command token(add-package). - CPackageManagerCLIHandler::Private_ValidateCmdLine",
        "{ymd} {hms}, Info                  DISM   DISM Package Manager: PID={pid} TID={pid} Package Microsoft-Windows-Foundation-Package~31bf3856ad364e35~amd64~~6.1.{n1}.{n1} is installed - CDISMPackageManager::Internal_Finalize",
        "{ymd} {hms}, Info                  DISM   DISM Provider Store: PID={pid} TID={pid} Getting Provider {camelid} - CDISMProviderStore::GetProvider",
        "{ymd} {hms}, Info                  DISM   API: PID={pid} TID={pid} {pii}",
    ],
    "python": [
        "Traceback (most recent call last):",
        '  File "/srv/app/{word}/{word}.py", line {n3}, in {word}_handler',
        '    raise ValueError(f"bad input: {value!r}")',
        "ValueError: {pii}",
        "{ymd} {hms},{ms} ERROR [{word}.worker] task {uuid} failed: {pii}",
        "requests.exceptions.ConnectionError: HTTPConnectionPool(host='{ipv4}', port={port}): Max retries exceeded with url: /{word} (Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x{hex12}>: Failed to establish a new connection: [Errno 111] Connection refused'))",
    ],
}

_PHRASINGS: dict[str, list[str]] = {
    "email": ["email={v}", "sending receipt to {v}", "<{v}>", "user '{v}' not found", "from: {v}"],
    "phone": ["phone={v}", "sms to {v} queued", "caller {v}", "contact_phone: {v}"],
    "ipv4": ["remote {v} closed connection", "addr={v}:8080", "blocked {v}", "via {v}"],
    "ipv6": ["remote [{v}]:8443 closed", "ip6={v}", "peer {v}"],
    "mac": ["mac={v}", "arp reply from {v}", "client {v} roamed"],
    "card": ["card={v}", "cc {v} charged", "payment card {v} tokenized"],
    "iban": ["iban={v}", "payout account {v}", "IBAN: {v}"],
    "ssn": ["ssn={v}", "SSN {v} on file"],
    "jwt": ["token={v}", "Bearer {v}", "jwt {v} expired"],
    "api_key": ["key={v}", "using api key {v}", "Authorization: token {v}"],
    "secret": ["password={v}", "secret_key: {v}", "api_secret={v}", '"client_secret": "{v}"', "token: {v}"],
    "url_credentials": [
        "redis://{v}@10-cache:6379",
        "jdbc:postgresql://{v}@db:5432/app",
        "https://{v}@registry.example.com/v2/",
        "amqp://{v}@mq:5672",
    ],
}
_CONTEXT_PHRASINGS: dict[str, list[str]] = {
    "phone": ["phone {v}", "call {v} back", "tel: {v}"],
    "ssn": ["SSN is {v}", "tin={v}", "ssn: {v}", "Social Security No. {v}"],
}


def _clean_snippets() -> list[Gen]:
    return [
        lambda r: f"heartbeat {r.randint(1, 10**6)} ok",
        lambda r: f"flushed {r.randint(1, 9999)} records in {r.randint(1, 900)} ms",
        lambda r: (
            f"checkpoint {r.randint(2015, 2024)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} 00:00:00 done"
        ),
        lambda r: f"using {r.choice(_CLASSES)}",
        lambda r: f"txn {r.randint(10**14, 10**16)} committed",
        lambda r: (
            f"release {r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(0, 99)} installed"
        ),
        lambda r: "connection pool exhausted",
        lambda r: f"object {v.hexs(r, 24)} evicted",
        lambda r: f"lock held {r.randint(1, 59)}s by thread-{r.randint(1, 64)}",
        lambda r: f"SessionTokenRefresher scheduled every {r.randint(1, 60)} min",
    ]


def _spec() -> Spec:
    def hms(r: random.Random) -> str:
        return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"

    def ymd(r: random.Random) -> str:
        return f"{r.randint(2008, 2024)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"

    fields: dict[str, Gen] = {
        "n1": lambda r: str(r.randint(0, 9)),
        "n2": lambda r: str(r.randint(10, 99)),
        "n3": lambda r: str(r.randint(100, 999)),
        "n4": lambda r: str(r.randint(1000, 9999)),
        "n5": lambda r: str(r.randint(10000, 99999)),
        "n6": lambda r: f"{r.randint(0, 999999):06d}",
        "n8": lambda r: str(r.randint(10**7, 10**8 - 1)),
        "n13": lambda r: str(r.randint(1_100_000_000_000, 1_800_000_000_000)),
        "pid": lambda r: str(r.randint(1, 32768)),
        "port": lambda r: str(r.randint(1024, 65535)),
        "status": lambda r: str(r.choice([200, 200, 304, 404, 500])),
        "size": lambda r: str(r.choice([r.randint(0, 9999), r.randint(10**5, 10**8)])),
        "size8": lambda r: str(r.choice([67108864, r.randint(10**5, 10**8)])),
        "ms": lambda r: f"{r.randint(0, 999):03d}",
        "ymd": ymd,
        "ymd2": lambda r: f"{r.randint(15, 24):02d}/{r.randint(1, 12):02d}/{r.randint(1, 28):02d}",
        "hms": hms,
        "mon": lambda r: r.choice(_MON),
        "day": lambda r: f"{r.randint(1, 28):>2}",
        "dow": lambda r: r.choice(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]),
        "iso": lambda r: f"{ymd(r)}T{hms(r)}.{r.randint(0, 999):03d}Z",
        "clf": lambda r: f"{r.randint(1, 28):02d}/{r.choice(_MON)}/{r.randint(2005, 2024)}:{hms(r)} -0700",
        "yymmdd": lambda r: f"{r.randint(8, 17):02d}{r.randint(1, 12):02d}{r.randint(1, 28):02d}",
        "hhmmss": lambda r: f"{r.randint(0, 23):02d}{r.randint(0, 59):02d}{r.randint(0, 59):02d}",
        "compact": lambda r: (
            f"{r.randint(2016, 2018)}{r.randint(1, 12):02d}{r.randint(1, 28):02d}-{hms(r)}:{r.randint(0, 999)}"
        ),
        "blk": lambda r: str(r.choice([-1, 1]) * r.getrandbits(63)),
        "uuid": lambda r: f"{v.hexs(r, 8)}-{v.hexs(r, 4)}-{v.hexs(r, 4)}-{v.hexs(r, 4)}-{v.hexs(r, 12)}",
        "hex4": lambda r: v.hexs(r, 4),
        "hex8": lambda r: v.hexs(r, 8),
        "hex12": lambda r: v.hexs(r, 12),
        "hex14": lambda r: v.hexs(r, 14),
        "hex16": lambda r: v.hexs(r, 16),
        "hex40": lambda r: v.hexs(r, 40),
        "klass": lambda r: r.choice(_CLASSES),
        "word": lambda r: r.choice(_WORDS),
        "user": lambda r: r.choice(["admin", "test", "oracle", "git", "ubuntu", "pi", "support", "user1"]),
        "host": lambda r: f"{r.choice(_WORDS)}.example-isp.net",
        "acpi": lambda r: r.choice(["ALASKA", "A M I", "INTEL", "DELL", "HPQOEM", "LENOVO"]),
        "pkg": lambda r: r.choice(["openssl-libs", "kernel", "glibc", "python3", "systemd"]),
        "n7": lambda r: str(r.randint(10**6, 10**7 - 1)),
        "n9": lambda r: str(r.randint(10**8, 10**9 - 1)),
        "camelpkg": lambda r: r.choice(
            ["cluster.YarnClusterSchedulerBackend", "storage.BlockManagerMasterEndpoint"]
        ),
        "camelid": lambda r: r.choice(
            [
                "CoarseGrainedSchedulerBackend2",
                "Log4jLoggerFactoryAdapter",
                "KafkaRDD010Partitioner",
                "Http11NioProtocolHandler",
                "S3AInputStreamStatistics",
                "ParquetFileFormatV2Writer",
                "AppleThunderboltNHIType2",
            ]
        ),
        "ua": lambda r: r.choice(
            [
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
                "curl/8.4.0",
                "Mozilla/5.0 (Windows; U; Windows NT 6.1; en-US; rv:1.9.2.13) Gecko/20101203 Firefox/3.6.13",
                "Googlebot/2.1 (+http://www.google.com/bot.html)",
            ]
        ),
        "version": lambda r: f"{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}",
    }
    values: dict[str, Gen] = {
        "email": v.email,
        "phone": v.phone,
        "ipv4": v.ipv4,
        "ipv6": v.ipv6,
        "mac": v.mac,
        "card": v.card,
        "iban": v.iban,
        "ssn": v.ssn,
        "jwt": v.jwt,
        "api_key": v.api_key,
        "secret": v.secret_value,
        "url_credentials": v.url_credentials,
    }

    def needs_context(kind: str, value: str) -> bool:
        if kind == "ssn":
            return value.isdigit()
        return kind == "phone" and value.isdigit()

    substitutes: dict[str, Gen] = {
        "ipv4": lambda r: f"{r.choice(_WORDS)}-{r.randint(1, 20)}.corp.example",
        "ipv6": lambda r: "localhost6",
        "email": lambda r: r.choice(_WORDS),
        "mac": lambda r: "unknown-hw",
    }
    return Spec(
        systems=SYSTEMS,
        fields=fields,
        values=values,
        phrasings=_PHRASINGS,
        context_phrasings=_CONTEXT_PHRASINGS,
        needs_context=needs_context,
        clean_snippets=_clean_snippets(),
        substitutes=substitutes,
    )


def tuning_lines(n: int, seed: int = 3) -> Iterator[Line]:
    return lines(_spec(), n, seed)
