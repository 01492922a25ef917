-- wrk script for bench/run.py: one script for every endpoint of the riskhub benchmarks.
--
-- wrk runs one Lua state per thread; `setup` (main state) numbers the threads so that every
-- POST body carries a version unique across threads and wrk runs: "<tag>-t<thread>-<counter>".
--
-- Arguments after the URL, as key=value:
--   method=POST|GET   path=<path, "{world}" cycles over w000..w(worlds-1)>   token=<bearer>
--   body=<file>       POST body; its "__VERSION__" placeholder gets the unique version
--   tag=<string>      unique per wrk run (POST only)
--   worlds=<n>        number of worlds to cycle over (default 100)
--   limit=<n>         stop this thread after n responses (0 = run for the whole duration)
--   donefile=<path>   with limit: create "<path><thread>" when this thread has stopped
--
-- `done` prints one machine-readable line, "BENCH_RESULT {json}", with the summary, latency
-- percentiles (microseconds) and the count of every HTTP status seen (via `response`).

local threads = {}

function setup(thread)
    thread:set("id", #threads)
    threads[#threads + 1] = thread
end

local method, headers, paths
local body_prefix, body_suffix, version_prefix
local sent, received, limit, donefile = 0, 0, 0, nil
statuses = {} -- global: `done` reads it from every thread with thread:get("statuses")

local function parse_args(args)
    local opts = {}
    for _, arg in ipairs(args) do -- args[0] is the URL, ipairs starts at 1
        local key, value = arg:match("^([%w_]+)=(.*)$")
        assert(key, "expected key=value, got " .. arg)
        opts[key] = value
    end
    return opts
end

local function read_file(path)
    local file = assert(io.open(path, "rb"))
    local data = file:read("*a")
    file:close()
    return data
end

local function world_paths(template, count)
    local result = {}
    for i = 0, count - 1 do
        local path = template:gsub("{world}", string.format("w%03d", i))
        result[#result + 1] = path
        if path == template then break end -- no placeholder: a single path
    end
    return result
end

function init(args)
    local opts = parse_args(args)
    method = opts.method
    headers = {
        ["Authorization"] = "Bearer " .. opts.token,
        ["X-Actor"] = "gateway",
        ["X-Stage"] = "paper",
    }
    paths = world_paths(opts.path, tonumber(opts.worlds or "100"))
    sent = id * 37 -- spread the threads over the worlds
    if opts.body then
        local body = read_file(opts.body)
        local at = assert(body:find("__VERSION__", 1, true), "body has no __VERSION__")
        body_prefix = body:sub(1, at - 1)
        body_suffix = body:sub(at + #"__VERSION__")
        version_prefix = opts.tag .. "-t" .. id .. "-"
        headers["Content-Type"] = "application/json"
    end
    limit = tonumber(opts.limit or "0")
    donefile = opts.donefile
end

function request()
    sent = sent + 1
    local path = paths[sent % #paths + 1]
    local body = nil
    if body_prefix then
        body = body_prefix .. version_prefix .. sent .. body_suffix
    end
    return wrk.format(method, path, headers, body)
end

function response(status)
    statuses[status] = (statuses[status] or 0) + 1
    received = received + 1
    if limit > 0 and received == limit then
        if donefile then
            assert(io.open(donefile .. id, "w")):close()
        end
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local counts = {}
    for _, thread in ipairs(threads) do
        for status, n in pairs(thread:get("statuses") or {}) do
            counts[status] = (counts[status] or 0) + n
        end
    end
    local parts = {}
    for status, n in pairs(counts) do
        parts[#parts + 1] = string.format('"%d": %d', status, n)
    end
    local e = summary.errors
    io.write(string.format(
        'BENCH_RESULT {"duration_us": %d, "requests": %d, "bytes": %d, '
            .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
            .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d}, "statuses": {%s}}\n',
        summary.duration, summary.requests, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
        table.concat(parts, ", ")
    ))
end
