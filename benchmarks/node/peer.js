// One side of a benchmark run in Node.js: a tls-json server or client
// written the way the Node package is (Node's tls module, one JSON.parse per
// received line, one JSON.stringify(obj) + "\n" per sent message, requests
// and responses matched by requestId / responseId), running the same
// workloads as benchmarks/peer.py and answering the same control requests,
// so that benchmarks/run.py can pair it with a txtlsjson server or client.
//
//   node benchmarks/node/peer.js serve --cert C --key K --sizes JSON
//   node benchmarks/node/peer.js client --port P --ca C --workload W [--reverse] --sizes JSON
//   node benchmarks/node/peer.js many --port P --ca C --sizes JSON
//
// "serve" prints "READY PORT"; the others print one JSON line with their
// figure, as the Python peer does.  Its line splitter looks for a newline
// only in each chunk as it arrives and joins a long line's chunks once, so a
// long message costs it linear time (a splitter that appends to one string
// and searches it on every chunk makes the big workloads quadratic, and the
// comparison meaningless).
'use strict'
const fs = require('fs')
const tls = require('tls')

const PASSWORD = 'benchmark-password'
const PAYLOAD = 'x'.repeat(64)

function parseArguments(argv) {
    const args = { role: argv[0], reverse: false }
    for (let i = 1; i < argv.length; i++) {
        const name = argv[i].replace(/^--/, '')
        if (name === 'reverse') args.reverse = true
        else args[name] = argv[++i]
    }
    args.sizes = JSON.parse(args.sizes)
    return args
}

function rss() {
    if (global.gc) global.gc()
    return process.memoryUsage().rss
}

// One connection, either side: frames lines, answers requests with the
// handler, and matches responses to the requests it sent.
class Channel {
    constructor(socket, handler) {
        this.socket = socket
        this.handler = handler
        this.pending = new Map()
        this.nextId = 1
        this.parts = []
        socket.setNoDelay(true)
        socket.setEncoding('utf8')
        socket.on('data', (chunk) => this.received(chunk))
    }

    received(chunk) {
        let from = 0
        let index
        while ((index = chunk.indexOf('\n', from)) !== -1) {
            let line = chunk.slice(from, index)
            if (this.parts.length) {
                this.parts.push(line)
                line = this.parts.join('')
                this.parts = []
            }
            from = index + 1
            if (line.length) this.onObject(JSON.parse(line))
        }
        if (from < chunk.length) this.parts.push(chunk.slice(from))
    }

    write(obj) {
        this.socket.write(JSON.stringify(obj) + '\n')
    }

    onObject(message) {
        if (this.onFirst) {
            const first = this.onFirst
            this.onFirst = null
            first(message)
        } else if (message.requestId) {
            const id = message.requestId
            delete message.requestId
            const answer = this.handler.request(this, message)
            if (answer instanceof Promise) {
                answer.then((value) => this.respond(id, value))
            } else {
                this.respond(id, answer)
            }
        } else if (message.responseId) {
            const resolve = this.pending.get(message.responseId)
            this.pending.delete(message.responseId)
            delete message.responseId
            resolve(message)
        } else if (message.__ping) {
            this.write({ __pong: message.__ping })
        } else if (!message.__pong) {
            this.handler.message(message)
        }
    }

    respond(id, answer) {
        answer.responseId = id
        this.write(answer)
    }

    send(message) {
        this.write(message)
    }

    request(message) {
        return new Promise((resolve) => {
            const id = this.nextId++
            this.pending.set(id, resolve)
            message.requestId = id
            this.write(message)
        })
    }
}

class Handler {
    constructor(sizes) {
        this.sizes = sizes
        this.count = 0
    }

    message(message) {
        this.count += 1
    }

    request(channel, request) {
        const op = request.op
        if (op === undefined) return request
        if (op === 'count') {
            const count = this.count
            this.count = 0
            return { count }
        }
        if (op === 'len') return { len: request.data.length }
        if (op === 'rss') return { rss: rss() }
        if (op === 'cpu') return { cpu: cpuSeconds() }
        if (op === 'run') return runWorkload(channel, request.workload, this.sizes)
        throw new Error(`unknown op ${op}`)
    }
}

function cpuSeconds() {
    const usage = process.cpuUsage()
    return (usage.user + usage.system) / 1e6
}

const turn = () => new Promise((resolve) => setImmediate(resolve))
const seconds = () => Number(process.hrtime.bigint()) / 1e9

// The workload's figure and, but for big, the CPU each side spent on it in
// microseconds per message or request (localCpu: this side, running the loop;
// peerCpu: the other), as benchmarks/peer.py reports them.
async function runWorkload(channel, workload, sizes) {
    if (workload.startsWith('big')) return runLoop(channel, workload, sizes)
    const peerBefore = (await channel.request({ op: 'cpu' })).cpu
    const localBefore = cpuSeconds()
    const result = await runLoop(channel, workload, sizes)
    const local = cpuSeconds() - localBefore
    const peer = (await channel.request({ op: 'cpu' })).cpu - peerBefore
    const n = sizes[workload]
    result.localCpu = local / n * 1e6
    result.peerCpu = peer / n * 1e6
    return result
}

async function runLoop(channel, workload, sizes) {
    if (workload === 'send') {
        const n = sizes.send
        const start = seconds()
        for (let i = 0; i < n; i++) {
            channel.send({ seq: i, payload: PAYLOAD })
            if (i % 1000 === 999) await turn()
        }
        const counted = (await channel.request({ op: 'count' })).count
        const elapsed = seconds() - start
        if (counted !== n) throw new Error(`sent ${n} messages, ${counted} arrived`)
        return { value: n / elapsed, unit: 'msgs/s' }
    }
    if (workload === 'rtt') {
        const n = sizes.rtt
        const start = seconds()
        for (let i = 0; i < n; i++) {
            const response = await channel.request({ seq: i, payload: PAYLOAD })
            if (response.seq !== i) throw new Error(`request ${i} answered with ${JSON.stringify(response)}`)
        }
        return { value: n / (seconds() - start), unit: 'req/s' }
    }
    if (workload === 'conc') {
        const n = sizes.conc
        const window = sizes.window
        let issued = 0
        let answered = 0
        const start = seconds()
        await new Promise((resolve, reject) => {
            const issue = () => {
                const seq = issued++
                channel.request({ seq, payload: PAYLOAD }).then((response) => {
                    if (response.seq !== seq) {
                        reject(new Error(`request ${seq} answered with ${JSON.stringify(response)}`))
                        return
                    }
                    answered += 1
                    if (issued < n) issue()
                    else if (answered === n) resolve()
                })
            }
            for (let i = 0; i < Math.min(window, n); i++) issue()
        })
        return { value: n / (seconds() - start), unit: 'req/s' }
    }
    if (workload.startsWith('big')) {
        const size = Number(workload.slice(3)) * 1024 * 1024
        const repeats = new Map(sizes.big).get(size)
        const data = 'x'.repeat(size)
        const lengthRequest = async () => {
            const answer = await channel.request({ op: 'len', data })
            if (answer.len !== size) throw new Error(`${size} bytes sent, ${JSON.stringify(answer)} reported`)
        }
        let start = seconds()
        await lengthRequest()
        const first = seconds() - start
        start = seconds()
        for (let i = 0; i < repeats; i++) await lengthRequest()
        const elapsed = seconds() - start
        return { value: size * repeats / elapsed / 1e6, unit: 'MB/s', firstRequest: size / first / 1e6 }
    }
    throw new Error(`unknown workload ${workload}`)
}

function serve(args) {
    const handler = new Handler(args.sizes)
    const server = tls.createServer({ cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) },
        (socket) => {
            const channel = new Channel(socket, handler)
            channel.onFirst = (message) => {
                if (message.password === PASSWORD) {
                    channel.write({ authenticated: true })
                } else {
                    channel.write({ error: 'incorrect password' })
                    socket.destroy()
                }
            }
            socket.on('error', () => {})
        })
    server.listen({ port: 0, host: '127.0.0.1', backlog: 1024 },
        () => process.stdout.write(`READY ${server.address().port}\n`))
}

function connect(args, handler) {
    return new Promise((resolve, reject) => {
        // By name, as the Python client connects (and as a user writes it):
        // both resolve it and check the certificate against it.
        const socket = tls.connect({ host: 'localhost', port: Number(args.port), ca: [args.caBytes] })
        const channel = new Channel(socket, handler)
        socket.once('secureConnect', () => channel.write({ password: PASSWORD }))
        channel.onFirst = (message) => {
            if (message.authenticated === true) resolve(channel)
            else reject(new Error(`refused: ${JSON.stringify(message)}`))
        }
        socket.once('error', reject)
    })
}

async function client(args) {
    const channel = await connect(args, new Handler(args.sizes))
    if (args.reverse) return channel.request({ op: 'run', workload: args.workload })
    return runWorkload(channel, args.workload, args.sizes)
}

// Hold sizes.many authenticated connections at once: the server's memory
// per connection, the connect + TLS + password rate and the CPU each side
// spent per connection made, and one request round across all -- as runMany
// in benchmarks/peer.py does.
async function many(args) {
    const n = args.sizes.many
    const control = await connect(args, new Handler(args.sizes))
    await new Promise((resolve) => setTimeout(resolve, 500))
    const before = (await control.request({ op: 'rss' })).rss
    const channels = []
    const batch = 100
    const serverBefore = (await control.request({ op: 'cpu' })).cpu
    const clientBefore = cpuSeconds()
    let start = seconds()
    for (let made = 0; made < n; made += batch) {
        const attempts = []
        for (let i = made; i < Math.min(made + batch, n); i++) {
            attempts.push(connect(args, new Handler(args.sizes)).then((c) => channels.push(c)))
        }
        await Promise.all(attempts)
    }
    const connectRate = n / (seconds() - start)
    const clientCpu = cpuSeconds() - clientBefore
    const serverCpu = (await control.request({ op: 'cpu' })).cpu - serverBefore
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const after = (await control.request({ op: 'rss' })).rss
    start = seconds()
    const answers = await Promise.all(channels.map((c, i) => c.request({ seq: i, payload: PAYLOAD })))
    const roundRate = n / (seconds() - start)
    answers.forEach((answer, i) => {
        if (answer.seq !== i) throw new Error('a request of the round was answered wrongly')
    })
    return {
        perConnection: (after - before) / n,
        connectRate,
        serverCpu: serverCpu / n * 1e6,
        clientCpu: clientCpu / n * 1e6,
        roundRate,
        unit: 'bytes',
    }
}

const args = parseArguments(process.argv.slice(2))
if (args.role === 'serve') {
    serve(args)
} else {
    args.caBytes = fs.readFileSync(args.ca)
    const run = args.role === 'many' ? many(args) : client(args)
    run.then((result) => {
        process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0))
    }, (error) => {
        process.stderr.write(`${error.stack}\n`)
        process.exit(1)
    })
}
