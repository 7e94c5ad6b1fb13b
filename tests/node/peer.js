// A tls-json peer in Node.js, written from docs/protocol.rst with Node's own
// tls module (no npm package), for the interoperability tests: it speaks
// the wire protocol the way the Node package does -- JSON.stringify(obj) +
// "\n", dispatch on truthy requestId / responseId / __ping / __pong -- and
// prints what happens as JSON lines on stdout.
//
//   node peer.js client PORT CA PASSWORD
//   node peer.js server CERT KEY PASSWORD      (prints {"listening": PORT})
//   node peer.js stay PORT CA PASSWORD         (a client that stays: it asks
//       {"whoami": true} once, answers requests, prints what comes)
'use strict'
const fs = require('fs')
const tls = require('tls')

const [mode, a, b, password] = process.argv.slice(2)
const say = (event) => process.stdout.write(JSON.stringify(event) + '\n')

function lines(socket, onObject) {
    let buffer = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk) => {
        buffer += chunk
        let index
        while ((index = buffer.indexOf('\n')) !== -1) {
            const line = buffer.slice(0, index)
            buffer = buffer.slice(index + 1)
            if (line.trim()) onObject(JSON.parse(line))
        }
    })
}

const write = (socket, obj) => socket.write(JSON.stringify(obj) + '\n')

if (mode === 'client') {
    const socket = tls.connect({ host: '127.0.0.1', port: Number(a), servername: 'localhost',
                                 ca: [fs.readFileSync(b)] }, () => {
        write(socket, { password })
    })
    let authenticated = false
    let answered = false
    let gotMessage = false
    let pings = 0
    const finish = () => {
        if (answered && gotMessage && pings >= 2) { say({ done: true }); socket.end() }
    }
    lines(socket, (message) => {
        if (!authenticated) {
            if (message.authenticated === true) {
                authenticated = true
                say({ authenticated: true })
                write(socket, { hello: 'from node', text: '\u4e16\u754c' })
                write(socket, { n: 20, requestId: 1 })
            } else {
                say({ refused: message })
            }
            return
        }
        if (message.requestId) {
            const id = message.requestId
            delete message.requestId
            say({ request: message })
            write(socket, Object.assign({ doubled: message.n * 2 }, { responseId: id }))
        } else if (message.responseId) {
            delete message.responseId
            say({ response: message })
            answered = true
            finish()
        } else if (message.__ping) {
            write(socket, { __pong: message.__ping })
            say({ ping: message.__ping })
            pings += 1
            finish()
        } else {
            say({ message })
            gotMessage = true
            finish()
        }
    })
    socket.on('close', () => say({ close: true }))
    socket.on('error', (e) => say({ error: e.message }))
} else if (mode === 'stay') {
    const socket = tls.connect({ host: '127.0.0.1', port: Number(a), servername: 'localhost',
                                 ca: [fs.readFileSync(b)] }, () => {
        write(socket, { password })
    })
    let authenticated = false
    lines(socket, (message) => {
        if (!authenticated) {
            authenticated = message.authenticated === true
            say(authenticated ? { authenticated: true } : { refused: message })
            if (authenticated) write(socket, { whoami: true, requestId: 1 })
            return
        }
        if (message.requestId) {
            const id = message.requestId
            delete message.requestId
            say({ request: message })
            write(socket, { doubled: message.n * 2, responseId: id })
        } else if (message.responseId) {
            delete message.responseId
            say({ response: message })
        } else if (message.__ping) {
            write(socket, { __pong: message.__ping })
        } else {
            say({ message })
        }
    })
    socket.on('close', () => say({ close: true }))
    socket.on('error', (e) => say({ error: e.message }))
} else if (mode === 'server') {
    const server = tls.createServer({ cert: fs.readFileSync(a), key: fs.readFileSync(b) }, (socket) => {
        let authenticated = false
        let nextId = 1
        lines(socket, (message) => {
            if (!authenticated) {
                if (message.password === password) {
                    authenticated = true
                    write(socket, { authenticated: true })
                    say({ authenticated: true })
                    write(socket, { welcome: 'from node' })
                    write(socket, { n: 7, requestId: nextId++ })
                    write(socket, { __ping: 5 })
                } else {
                    write(socket, { error: 'incorrect password' })
                    socket.destroy()
                }
                return
            }
            if (message.requestId && typeof message.data === 'string') {
                // A big request: answered with its length and its last
                // characters, then sent back whole as a message.
                say({ bigRequest: message.data.length })
                write(socket, { length: message.data.length, tail: message.data.slice(-8),
                                responseId: message.requestId })
                write(socket, { echo: message.data })
            } else if (message.requestId) {
                const id = message.requestId
                delete message.requestId
                say({ request: message })
                write(socket, { tripled: message.n * 3, responseId: id })
            } else if (message.responseId) {
                delete message.responseId
                say({ response: message })
            } else if (message.__pong) {
                say({ pong: message.__pong })
            } else {
                say({ message })
            }
        })
        socket.on('close', () => { say({ close: true }); server.close() })
    })
    server.listen(0, '127.0.0.1', () => say({ listening: server.address().port }))
}
