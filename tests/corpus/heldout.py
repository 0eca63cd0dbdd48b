"""The held-out corpus: what the redaction figures are reported on, never what detectors are tuned on.

Written before any detector change and not read line by line while tuning. Other systems than the
tuning corpus (OpenStack, BGL, HPC, Thunderbird, Windows CBS, macOS, Android logcat, Proxifier,
RFC 5424 syslog, Nginx, Java stack traces) plus other message variants of HDFS, Spark and HealthApp,
and application lines (logfmt, JSON) worded differently; values come mostly from Faker across
locales rather than from ``tests.corpus.values``.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator

from faker import Faker

from tests.corpus import values as v
from tests.corpus._build import Gen, Line, Spec, lines
from tests.proof.pii_corpus import api_key as pii_api_key

__all__ = ["SYSTEMS", "heldout_lines"]

_MON = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_DAY = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_PHONE_LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT", "en_IN", "en_AU", "pt_BR"]
_IBAN_LOCALES = ["de_DE", "fr_FR", "en_GB", "nl_NL", "es_ES", "it_IT", "pl_PL", "de_AT", "fr_CH", "nl_BE"]

SYSTEMS: dict[str, list[str]] = {
    "openstack": [
        'nova-api.log.1.2017-05-16_13:53:08 {ymd} {hms}.{ms} {pid} INFO nova.osapi_compute.wsgi.server [req-{uuid} {hex32} {hex32} - - -] {ipv4} "GET /v2/{hex32}/servers/detail HTTP/1.1" status: {status} len: {size} time: {secs}',
        "nova-compute.log.1.2017-05-16_13:55:31 {ymd} {hms}.{ms} {pid} INFO nova.compute.manager [req-{uuid} - - - - -] [instance: {uuid}] VM {vmstate} (Lifecycle Event)",
        "nova-compute.log.1.2017-05-16_13:55:31 {ymd} {hms}.{ms} {pid} INFO nova.virt.libvirt.imagecache [req-{uuid} - - - - -] image {uuid} at (/var/lib/nova/instances/_base/{hex40}): checking",
        "nova-api.log.1.2017-05-16_13:53:08 {ymd} {hms}.{ms} {pid} WARNING nova.api.openstack [req-{uuid} {hex32} {hex32} - - -] {pii}",
        "nova-compute.log.1.2017-05-16_13:55:31 {ymd} {hms}.{ms} {pid} INFO nova.compute.resource_tracker [req-{uuid} - - - - -] Final resource view: name=cp-{n2}.slowvm1.tcloud-pg0.utah.cloudlab.us phys_ram={n5}MB used_ram={n4}MB phys_disk={n2}GB used_disk={n2}GB total_vcpus={n2} used_vcpus={n1} pci_stats=[]",
    ],
    "bgl": [
        "- {epoch} {bgldate} R{n2}-M{n1}-N{n1}-C:J{n2}-U{n2} {bglts} R{n2}-M{n1}-N{n1}-C:J{n2}-U{n2} RAS KERNEL INFO {n3} double-hummer alignment exceptions",
        "- {epoch} {bgldate} R{n2}-M{n1}-N{n1}-C:J{n2}-U{n2} {bglts} R{n2}-M{n1}-N{n1}-C:J{n2}-U{n2} RAS KERNEL INFO instruction cache parity error corrected",
        "APPREAD {epoch} {bgldate} R{n2}-M{n1}-N{n1}-I:J18-U11 {bglts} R{n2}-M{n1}-N{n1}-I:J18-U11 RAS APP FATAL ciod: failed to read message prefix on control stream (CioStream socket to {ipv4}:{port}",
        "KERNDTLB {epoch} {bgldate} R{n2}-M{n1}-N{n1}-C:J{n2}-U{n2} {bglts} R{n2}-M{n1}-N{n1}-C:J{n2}-U{n2} RAS KERNEL FATAL data TLB error interrupt",
        "- {epoch} {bgldate} R{n2}-M{n1}-N{n1}-C:J{n2}-U{n2} {bglts} R{n2}-M{n1}-N{n1}-C:J{n2}-U{n2} RAS KERNEL INFO generating core.{n4}",
        "- {epoch} {bgldate} R{n2}-M{n1}-N{n1}-C:J{n2}-U{n2} {bglts} R{n2}-M{n1}-N{n1}-C:J{n2}-U{n2} RAS APP INFO {pii}",
    ],
    "hpc": [
        "{n6} node-{n3} unix.hw state_change.unavailable {epoch} 1 Component State Change: Component \\042alt0\\042 is in the unavailable state (HWID={n4})",
        "{n6} node-{n3} action start {epoch} 1 clusterAddMember  (command {n4})",
        "{n6} gige{n1} switch_module link {epoch} 1 Link error on broadcast tree Interconnect-0T00:00:{n1}:{n1}",
        "{n6} node-{n3} boot_cmd new {epoch} 1 Targeting domains:node-D{n1} and nodes:node-[{n2}-{n2}] child of command {n4}",
        "{n6} node-{n3} usercmd note {epoch} 1 {pii}",
    ],
    "thunderbird": [
        "- {epoch} {bgldate} dn{n3} {mon} {day} {hms} dn{n3}/dn{n3} crond(pam_unix)[{pid}]: session closed for user root",
        "- {epoch} {bgldate} an{n3} {mon} {day} {hms} an{n3}/an{n3} ntpd[{pid}]: synchronized to {ipv4}, stratum {n1}",
        "- {epoch} {bgldate} bn{n3} {mon} {day} {hms} bn{n3}/bn{n3} sshd[{pid}]: Accepted publickey for root from {ipv4} port {port} ssh2",
        "- {epoch} {bgldate} dn{n3} {mon} {day} {hms} dn{n3}/dn{n3} postfix/smtpd[{pid}]: {pii}",
        "VAPI {epoch} {bgldate} tn{n3} {mon} {day} {hms} tn{n3}/tn{n3} kernel: [KERNEL_IB][ib_mad_dispatch][/mnt_projects/sysapps/src/ib/topspin/topspin-src-3.2.0-16/ib/ts_api_ng/mad/obj_host_amd64_custom1_rhel4/ts_ib_mad/mad_filter.c:{n3}]Tavor not supported",
    ],
    "windows_cbs": [
        "{ymd} {hms}, Info                  CBS    Loaded Servicing Stack v6.1.7601.{n5} with Core: C:\\Windows\\winsxs\\amd64_microsoft-windows-servicingstack_31bf3856ad364e35_6.1.7601.{n5}_none_{hex16}\\cbscore.dll",
        "{ymd} {hms}, Info                  CSI    {hex8}@2016/9/27:20:30:31.455 WcpInitialize (wcp.dll version 0.0.0.6) called (stack @0x7fed806eb5d @0x7fef9fb9b6d @0x7fef9f8358f @0xff83e97c)",
        "{ymd} {hms}, Info                  CBS    Session: {n8}_{n10} initialized by client WindowsUpdateAgent.",
        "{ymd} {hms}, Info                  CBS    Read out cached package applicability for package: Package_for_KB{n7}~31bf3856ad364e35~amd64~~6.1.{n1}.{n1}, ApplicableState: {n2}, CurrentState:{n2}",
        "{ymd} {hms}, Info                  CBS    SQM: Initializing online with Windows opt-in: False",
        "{ymd} {hms}, Info                  CBS    Warning: Unrecognized packageExtended attribute. {pii}",
    ],
    "mac": [
        "{mon} {day} {hms} calvisitor-10-105-160-95 kernel[0]: IOThunderboltSwitch<0>(0x0)::listenerCallback - Thunderbolt HPD packet for route = 0x0 port = {n2} unplug = 0",
        "{mon} {day} {hms} calvisitor-10-105-160-95 com.apple.CDScheduler[{pid}]: Thermal pressure state: 1 Memory pressure state: 0",
        "{mon} {day} {hms} authorMacBook-Pro com.apple.WebKit.WebContent[{pid}]: [{hms}.{ms}] <<<< CRABS >>>> crabsFlumeHostAvailable: [0x{hex12}] Byte flume reports host available again.",
        "{mon} {day} {hms} authorMacBook-Pro kernel[0]: AppleThunderboltNHIType2::prePCIWake - power up complete - took {n1} us",
        "{mon} {day} {hms} authorMacBook-Pro networkd[{pid}]: -[NETClientConnection evaluateCrazyIvan46] CI46 - Hit by torpedo! QQ.{n5} tc{n5} {ipv4}:{port}",
        "{mon} {day} {hms} authorMacBook-Pro mDNSResponder[{pid}]: mDNS_RegisterInterface: Frequent transitions for interface en0 ({ipv6})",
        '{mon} {day} {hms} authorMacBook-Pro GoogleSoftwareUpdateAgent[{pid}]: {ymd} {hms}.{ms} GoogleSoftwareUpdateAgent[{pid}/0x{hex12}] [lvl=2] -[KSAgentApp updateProductWithProductID:usingEngine:] Checking for updates for "com.google.Keystone" using engine <KSUpdateEngine:0x{hex12}',
        "{mon} {day} {hms} authorMacBook-Pro Mail[{pid}]: {pii}",
    ],
    "android": [
        "{md} {hms}.{ms}  {pid}  {pid} D WindowManager: printFreezingDisplayLogsopening app wtoken = AppWindowToken{{hex7} token=Token{{hex7} ActivityRecord{{hex7} u0 com.tencent.qt.qtl/.activity.info.NewsDetailXWalkActivity t{n3}}}}, allDrawn= false, startingDisplayed =  false",
        '{md} {hms}.{ms}  {pid}  {pid} V PowerManagerService: acquire lock={n9}, flags=0x1, tag="RILJ_ACK_WL", name=com.android.phone, ws=null, uid={n4}, pid={pid}',
        "{md} {hms}.{ms}  {pid}  {pid} I ActivityManager: Start proc {pid}:com.android.settings/1000 for service com.android.settings/.bluetooth.BluetoothPairingService",
        "{md} {hms}.{ms}  {pid}  {pid} D WifiStateMachine: connected to {mac} rssi=-{n2}",
        "{md} {hms}.{ms}  {pid}  {pid} I AccountManagerService: {pii}",
    ],
    "proxifier": [
        "[{mdot} {hms}] chrome.exe - proxy.cse.cuhk.edu.hk:5070 open through proxy proxy.cse.cuhk.edu.hk:5070 HTTPS",
        "[{mdot} {hms}] chrome.exe - {ipv4}:{port} close, {n3} bytes sent, {n4} bytes received, lifetime <1 sec",
        "[{mdot} {hms}] chrome.exe *64 - play.google.com:443 close, {n4} bytes ({n1}.{n2} KB) sent, {n4} bytes ({n1}.{n2} KB) received, lifetime 00:{n2}",
        "[{mdot} {hms}] WeChat.exe - {ipv4}:443 error : Could not connect through proxy proxy.cse.cuhk.edu.hk:5070 - Proxy server cannot establish a connection with the target, status code {status}",
    ],
    "syslog5424": [
        "<{pri}>1 {iso} web-{n2}.example.net nginx {pid} - - {pii}",
        '<{pri}>1 {iso} db-{n1}.example.net postgres {pid} - [meta sequenceId="{n5}"] connection received: host={ipv4} port={port}',
        "<{pri}>1 {iso} mx-{n1}.example.net postfix/smtp {pid} ID{n3} - {hexup10}: to=<{email}>, relay=none, delay={secs}, status=deferred",
        '<{pri}>1 {iso} app-{n1} billing {pid} - [exampleSDID@32473 iut="3" eventSource="Application" eventID="{n4}"] invoice {n6} paid',
    ],
    "nginx": [
        '{ipv4} - - [{clf}] "GET /static/{word}.{ext} HTTP/1.1" {status} {size} "-" "{ua}" rt={secs} uct="0.000"',
        '{ipv4} - {user} [{clf}] "POST /api/v2/{word} HTTP/2.0" {status} {size} {n3} "https://shop.example.com/{word}" "{ua}"',
        '{ymdslash} {hms} [error] {pid}#{pid}: *{n6} upstream timed out (110: Connection timed out) while reading response header from upstream, client: {ipv4}, server: example.com, request: "GET /{word} HTTP/1.1", upstream: "http://{ipv4}:8080/{word}", host: "example.com"',
        "{ymdslash} {hms} [warn] {pid}#{pid}: *{n6} an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/{n1}/{n2}/{n10} while reading upstream",
        '{ipv4} - - [{clf}] "GET /{word}?{pii} HTTP/1.1" {status} {size} "-" "{ua}"',
    ],
    "java": [
        "\tat org.apache.{word}.{word}.{camel}.{lcamel}({camel}.java:{n3})",
        "Caused by: java.net.ConnectException: Connection refused: {host}/{ipv4}:{port}",
        "{ymd} {hms}.{ms} ERROR [{thread}] o.s.w.s.m.m.a.ExceptionHandlerExceptionResolver : Resolved [org.springframework.web.HttpMediaTypeNotSupportedException: Content type 'text/plain;charset=UTF-8' not supported]",
        "{ymd} {hms}.{ms}  WARN {pid} --- [{thread}] c.e.{word}.{camel}Service : {pii}",
        "java.lang.IllegalArgumentException: {pii}",
        "\t... {n2} common frames omitted",
    ],
    "hdfs": [
        "{yymmdd} {hhmmss} {n2} INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: {ipv4}:50010 is added to blk_{blk} size {size8}",
        "{yymmdd} {hhmmss} {n2} INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /mnt/hadoop/mapred/system/job_{yymmdd}{hhmm}_{n4}/job.jar. blk_{blk}",
        "{yymmdd} {hhmmss} {n3} INFO dfs.DataNode$DataTransfer: {ipv4}:50010:Transmitted block blk_{blk} to /{ipv4}:50010",
        "{yymmdd} {hhmmss} {n2} WARN dfs.DataNode$DataXceiver: {ipv4}:50010:Got exception while serving blk_{blk} to /{ipv4}:",
    ],
    "spark": [
        "{ymd2} {hms} INFO storage.BlockManagerMaster: Registered BlockManager BlockManagerId({n1}, mesos-slave-{n2}, {port})",
        "{ymd2} {hms} INFO executor.Executor: Finished task {n2}.0 in stage {n2}.0 (TID {n4}). {n4} bytes result sent to driver",
        "{ymd2} {hms} INFO util.Utils: Successfully started service 'sparkExecutorActorSystem' on port {port}.",
        "{ymd2} {hms} INFO client.TransportClientFactory: Successfully created connection to /{ipv4}:{port} after {n2} ms ({n1} ms spent in bootstraps)",
    ],
    "healthapp": [
        "{compact}|Step_LSC|{n8}|onStandStepChanged {n4}",
        "{compact}|Step_StandReportReceiver|{n8}|REPORT : {n4} {n4} {n6} {n3}",
        "{compact}|Step_SPUtils|{n8}| getTodayTotalDetailSteps = {n13}##{n4}##{n6}##{n4}##{n5}##{n8}",
        "{compact}|Step_ExtSDM|{n8}|calculateCaloriesWithCache totalCalories={n6}",
    ],
    "logfmt": [
        'time={iso} level=info msg="request served" method=GET path=/v1/{word} status={status} bytes={size} duration={secs}s remote={ipv4}',
        'time={iso} level=warn msg="{pii}" component={word} attempt={n1}',
        "ts={iso} caller={word}.go:{n3} level=debug span={hex16} trace={hex32} dur={n4}us",
        'at={loglevel} method=POST path="/{word}" host=api.example.com request_id={uuid} fwd="{ipv4}" dyno=web.{n1} connect={n1}ms service={n2}ms status={status} bytes={size} protocol=https',
    ],
    "json": [
        '{"@timestamp":"{iso}","log.level":"info","message":"{pii}","service.name":"{word}","trace.id":"{hex32}"}',
        '{"ts":{epoch}.{ms},"level":"error","caller":"{word}/{word}.go:{n3}","msg":"dial failed","addr":"{ipv4}:{port}","retry_in":"{n1}s"}',
        '{"time":"{iso}","severity":"NOTICE","httpRequest":{"requestMethod":"GET","status":{status},"responseSize":"{size}","remoteIp":"{ipv4}","latency":"{secs}s"}}',
        '{"level":"debug","event":"cache.miss","key":"{word}:{n6}","shard":{n2},"build":"{version}"}',
    ],
}

# Phrasings of the held-out writer: one "{v}" each.
_PHRASINGS: dict[str, list[str]] = {
    "email": [
        "user {v} signed up",
        "password reset requested for {v}",
        "to=<{v}>",
        "invitation sent to {v} by admin",
        "Delivery to {v} failed: 550 5.1.1 user unknown",
        "account_email={v}",
        "Login succeeded for {v}",
    ],
    "phone": [
        "SMS verification code sent to {v}",
        "customer callback number: {v}",
        "updated phone to {v}",
        "tel={v}",
        "msisdn {v} opted out",
        "contact {v} for delivery",
    ],
    "ipv4": [
        "client {v} exceeded rate limit",
        "connect to {v}:443 failed",
        "X-Forwarded-For: {v}",
        "peer={v}",
        "banned {v} for 600s",
    ],
    "ipv6": [
        "client [{v}]:443 reset the stream",
        "from {v} port 22",
        "remote_addr={v}",
        "neighbour {v} unreachable",
    ],
    "mac": ["DHCPACK to {v} via eth0", "device {v} joined", "station {v} associated", "hwaddr={v}"],
    "card": [
        "charge declined for card {v}",
        "pan={v}",
        "payment method {v} saved",
        "card number {v} expired",
    ],
    "iban": ["payout to IBAN {v} scheduled", "sepa debtor_iban={v}", "refund to {v} failed", "iban: {v}"],
    "ssn": ["applicant SSN {v} verified", "ssn={v} mismatch", "SSN#{v}"],
    "jwt": ["invalid token {v}", "Authorization: Bearer {v}", "id_token={v}", "refreshing session jwt {v}"],
    "api_key": ["using key {v}", "X-API-Key: {v}", "leaked credential {v} revoked", "api_key={v}"],
    "secret": [
        "aws_secret_access_key = {v}",
        "secret_key: {v}",
        "client_secret={v}",
        'payload {"user":"svc","passwd":"{v}"}',
        "X-Auth-Token: {v}",
        "DB_PASSWORD={v}",
        "signing_key: {v}",
    ],
    "url_credentials": [
        "connecting to redis://{v}@cache-{n}.internal:6379/0",
        "broker amqp://{v}@rabbit.internal:5672/%2F",
        "fetch https://{v}@git.example.com/org/repo.git",
        "dsn=postgresql://{v}@db.internal:5432/app?sslmode=require",
        "mongodb://{v}@mongo-0.mongo:27017/admin",
    ],
}
_CONTEXT_PHRASINGS: dict[str, list[str]] = {
    "phone": [
        "SMS verification code sent to phone {v}",
        "customer callback: tel {v}",
        "mobile {v} verified",
        "call from {v} missed",
    ],
    "ssn": ["SSN is {v}", "tin={v}", "social security number {v} on file", "taxpayer id: {v}", "SSN: {v}"],
}


def _clean_snippets() -> list[Gen]:
    return [
        lambda r: f"retrying in {r.randint(1, 30)}s",
        lambda r: f"cache warmed: {r.randint(100, 99999)} entries",
        lambda r: (
            f"order {r.randint(2015, 2026)}{r.randint(1, 12):02d}{r.randint(1, 28):02d}-{r.randint(1, 9999):04d} shipped"
        ),
        lambda r: f"job {r.randint(10**9, 10**12)} finished after {r.randint(1, 3600)} s",
        lambda r: f"version {r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)} rolled out",
        lambda r: f"took 00:00:{r.randint(0, 59):02d}.{r.randint(0, 999):03d}",
        lambda r: f"user {r.randint(1, 10**7)} logged out",
        lambda r: "queue drained",
        lambda r: f"GC pause {r.randint(1, 900)}ms heap {r.randint(100, 4000)}MB/{r.randint(4000, 8000)}MB",
        lambda r: f"{r.randint(1, 500)} rows affected",
        lambda r: f"checksum {v.hexs(r, 40)} ok",
        lambda r: (
            f"request {v.hexs(r, 8)}-{v.hexs(r, 4)}-{v.hexs(r, 4)}-{v.hexs(r, 4)}-{v.hexs(r, 12)} timed out"
        ),
        lambda r: f"UserSessionManagerImpl refreshed {r.randint(1, 99)} sessions",
        lambda r: (
            f"tenant {r.choice(['acme', 'globex', 'initech'])} over quota ({r.randint(100, 999)}/{r.randint(1000, 2000)})"
        ),
    ]


def _spec(seed: int) -> Spec:
    rng0 = random.Random(seed ^ 0x5EED)
    fakes = {loc: Faker(loc) for loc in sorted({*_PHONE_LOCALES, *_IBAN_LOCALES, "en_US"})}
    for f in fakes.values():
        f.seed_instance(rng0.getrandbits(32))
    en = fakes["en_US"]

    def two(r: random.Random) -> str:
        return f"{r.randint(0, 99):02d}"

    def hms(r: random.Random) -> str:
        return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"

    def ymd(r: random.Random) -> str:
        return f"{r.randint(2005, 2024)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"

    def camel(r: random.Random) -> str:
        return "".join(w.capitalize() for w in en.words(r.randint(2, 4)))

    fields: dict[str, Gen] = {
        "n": lambda r: str(r.randint(0, 9)),
        "n1": lambda r: str(r.randint(0, 9)),
        "n2": lambda r: str(r.randint(10, 99)),
        "n3": lambda r: str(r.randint(100, 999)),
        "n4": lambda r: str(r.randint(1000, 9999)),
        "n5": lambda r: str(r.randint(10000, 99999)),
        "n6": lambda r: str(r.randint(100000, 999999)),
        "n7": lambda r: str(r.randint(10**6, 10**7 - 1)),
        "n8": lambda r: str(r.randint(10**7, 10**8 - 1)),
        "n9": lambda r: str(r.randint(10**8, 10**9 - 1)),
        "n10": lambda r: str(r.randint(10**9, 10**10 - 1)),
        "n13": lambda r: str(r.randint(10**12, 10**13 - 1)),
        "pid": lambda r: str(r.randint(1, 32768)),
        "port": lambda r: str(r.randint(1024, 65535)),
        "status": lambda r: str(
            r.choice([200, 200, 200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 500, 502, 503])
        ),
        "size": lambda r: str(
            r.choice([r.randint(0, 999), r.randint(1000, 99999), r.randint(100000, 9999999)])
        ),
        "size8": lambda r: str(r.choice([67108864, r.randint(10**6, 10**8)])),
        "secs": lambda r: f"{r.random() * 3:.{r.choice([3, 7])}f}",
        "ms": lambda r: f"{r.randint(0, 999):03d}",
        "epoch": lambda r: str(r.randint(1_100_000_000, 1_800_000_000)),
        "ymd": ymd,
        "ymd2": lambda r: f"{r.randint(15, 24):02d}/{r.randint(1, 12):02d}/{r.randint(1, 28):02d}",
        "ymdslash": lambda r: ymd(r).replace("-", "/"),
        "hms": hms,
        "md": lambda r: f"{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
        "mdot": lambda r: f"{r.randint(1, 12):02d}.{r.randint(1, 28):02d}",
        "mon": lambda r: r.choice(_MON),
        "day": lambda r: f"{r.randint(1, 28):>2}",
        "iso": lambda r: f"{ymd(r)}T{hms(r)}.{r.randint(0, 999999):06d}{r.choice(['Z', '+00:00', '-05:00'])}",
        "clf": lambda r: f"{r.randint(1, 28):02d}/{r.choice(_MON)}/{r.randint(2015, 2024)}:{hms(r)} +0000",
        "bgldate": lambda r: f"{r.randint(2005, 2006)}.{r.randint(1, 12):02d}.{r.randint(1, 28):02d}",
        "bglts": lambda r: (
            f"{r.randint(2005, 2006)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}-{r.randint(0, 23):02d}.{r.randint(0, 59):02d}.{r.randint(0, 59):02d}.{r.randint(0, 999999):06d}"
        ),
        "yymmdd": lambda r: f"08{r.randint(11, 12)}{r.randint(1, 28):02d}",
        "hhmmss": lambda r: f"{r.randint(0, 23):02d}{r.randint(0, 59):02d}{r.randint(0, 59):02d}",
        "hhmm": lambda r: f"{r.randint(0, 23):02d}{r.randint(0, 59):02d}",
        "compact": lambda r: (
            f"{r.randint(2016, 2018)}{r.randint(1, 12):02d}{r.randint(1, 28):02d}-{hms(r)}:{r.randint(0, 999)}"
        ),
        "pri": lambda r: str(r.randint(0, 191)),
        "blk": lambda r: str(r.choice([-1, 1]) * r.getrandbits(63)),
        "uuid": lambda r: f"{v.hexs(r, 8)}-{v.hexs(r, 4)}-4{v.hexs(r, 3)}-a{v.hexs(r, 3)}-{v.hexs(r, 12)}",
        "hex7": lambda r: v.hexs(r, 7),
        "hex8": lambda r: v.hexs(r, 8),
        "hex12": lambda r: v.hexs(r, 12),
        "hex16": lambda r: v.hexs(r, 16),
        "hex32": lambda r: v.hexs(r, 32),
        "hex40": lambda r: v.hexs(r, 40),
        "hexup10": lambda r: v.hexs(r, 10).upper(),
        "vmstate": lambda r: r.choice(["Started", "Paused", "Resumed", "Stopped"]),
        "word": lambda r: en.word(),
        "ext": lambda r: r.choice(["css", "js", "png", "woff2", "svg"]),
        "ua": lambda r: en.user_agent(),
        "user": lambda r: r.choice(["-", "api", "deploy", "admin"]),
        "camel": camel,
        "lcamel": lambda r: en.word() + camel(r),
        "thread": lambda r: r.choice(["main", "http-nio-8080-exec-7", "pool-2-thread-1", "scheduling-1"]),
        "host": lambda r: f"{en.word()}-{r.randint(1, 9)}.internal",
        "loglevel": lambda r: r.choice(["info", "warn", "error"]),
        "version": lambda r: f"{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}",
    }

    def phone(r: random.Random) -> str:
        return str(fakes[r.choice(_PHONE_LOCALES)].phone_number())

    def card(r: random.Random) -> str:
        number = str(
            en.credit_card_number(
                card_type=r.choice(["visa16", "mastercard", "amex", "discover", "jcb16", "diners"])
            )
        )
        style = r.randrange(3)
        if style == 0:
            return number
        if len(number) == 15:
            groups = [number[:4], number[4:10], number[10:]]
        else:
            groups = [number[i : i + 4] for i in range(0, len(number), 4)]
        return (" " if style == 1 else "-").join(groups)

    def iban(r: random.Random) -> str:
        value = str(fakes[r.choice(_IBAN_LOCALES)].iban())
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4)) if r.random() < 0.4 else value

    def ssn(r: random.Random) -> str:
        value = str(en.ssn())
        return value.replace("-", "") if r.random() < 0.35 else value

    def ipv6(r: random.Random) -> str:
        value = str(en.ipv6())
        return value if r.random() < 0.6 else v.ipv6(r)

    def secret(r: random.Random) -> str:
        return r.choice(
            [
                lambda: v.rand(r, 40, string.ascii_letters + string.digits + "/+"),
                lambda: v.hexs(r, r.choice([32, 64])),
                lambda: str(en.password(length=r.randint(10, 16), special_chars=False)),
            ]
        )()

    def url_credentials(r: random.Random) -> str:
        user = r.choice(["", "", str(en.user_name()), "guest", "root"])
        return f"{user}:{en.password(length=r.randint(8, 16), special_chars=False)}"

    values: dict[str, Gen] = {
        "email": lambda r: str(r.choice([en.email, en.free_email, en.company_email])()),
        "phone": phone,
        "ipv4": lambda r: str(en.ipv4_public() if r.random() < 0.6 else en.ipv4_private()),
        "ipv6": ipv6,
        "mac": lambda r: v.mac(r) if r.random() < 0.3 else str(en.mac_address()),
        "card": card,
        "iban": iban,
        "ssn": ssn,
        "jwt": v.jwt,
        "api_key": pii_api_key,
        "secret": secret,
        "url_credentials": url_credentials,
    }

    def needs_context(kind: str, value: str) -> bool:
        if kind == "ssn":
            return value.isdigit()
        if kind == "phone":
            digits = sum(c.isdigit() for c in value)
            bare = not any(c in value for c in " .-()+") and (value[0] != "0" or value[1] == "0")
            return bare or digits < 9
        return False

    substitutes: dict[str, Gen] = {
        "ipv4": lambda r: f"{en.word()}-{r.randint(1, 40)}.example.net",
        "ipv6": lambda r: f"node-{r.randint(1, 99)}.v6.example.net",
        "email": lambda r: str(en.user_name()),
        "mac": lambda r: f"wlan{r.randint(0, 3)}",
    }
    phrasings = {k: [p.replace("{n}", "1") for p in ps] for k, ps in _PHRASINGS.items()}
    return Spec(
        systems=SYSTEMS,
        fields={**fields, "two": two},
        values=values,
        phrasings=phrasings,
        context_phrasings=_CONTEXT_PHRASINGS,
        needs_context=needs_context,
        clean_snippets=_clean_snippets(),
        substitutes=substitutes,
    )


def heldout_lines(n: int, seed: int = 9) -> Iterator[Line]:
    return lines(_spec(seed), n, seed)
