#!/usr/bin/python3
"""Drives a crowbar agent the way Zero-OS's Python client (zeroos.core0.client,
on redis-py) does: the same Redis commands, in the same order, with the same
JSON. Written for crowbar's tests from the protocol; it is not that client.

Usage: zeroos_client.py HOST PORT JWT WORKDIR [CONTAINER_ROOT]
Prints one "ok <check>" line per check and exits 0, or fails with a traceback.
With CONTAINER_ROOT it checks the container calls instead.
"""
import base64
import io
import json
import os
import signal
import sys
import time
import uuid

import redis


class JobNotFound(Exception):
    pass


class Response:
    """A pushed job: how the Zero-OS client reads it back."""

    def __init__(self, client, job_id):
        self.client = client
        self.id = job_id
        self.queue = 'result:%s' % job_id

    @property
    def exists(self):
        return bool(self.client.redis.execute_command('LKEYEXISTS', self.queue + ':flag'))

    @property
    def running(self):
        flag = self.queue + ':flag'
        if self.client.redis.execute_command('LKEYEXISTS', flag):
            return self.client.redis.execute_command('LTTL', flag) == -1
        return False

    def get(self, timeout=10):
        left = timeout
        while left > 0:
            if not self.exists:
                raise JobNotFound(self.id)
            v = self.client.redis.brpoplpush(self.queue, self.queue, min(left, 10))
            if v is not None:
                return json.loads(v.decode())
            left -= 10
        raise TimeoutError(self.id)

    def stream(self, callback):
        key = 'stream:%s' % self.id
        r = self.client.redis
        if not self.running and r.llen(key) == 0:
            return
        while True:
            data = r.blpop(key, 10)
            if data is None:
                if not self.running:
                    break
                continue
            _, body = data
            msg = json.loads(body.decode())['message']
            callback(msg['meta'] >> 16, msg['message'], msg['meta'] & 0xff)
            if msg['meta'] & 0x6 != 0:
                break


class ContainerClient:
    """Commands run inside a container: corex.dispatch, then the job read
    from the node, as Zero-OS's ContainerClient does."""

    def __init__(self, client, container):
        self.client = client
        self.container = container

    def raw(self, command, arguments, queue=None, max_time=None, stream=False, tags=None, id=None):
        args = {'container': self.container,
                'command': {'command': command, 'arguments': arguments, 'queue': queue,
                            'max_time': max_time, 'stream': stream, 'tags': tags, 'id': id}}
        result = self.client.raw('corex.dispatch', args).get()
        if result['state'] != 'SUCCESS':
            raise RuntimeError('failed to dispatch command to container: %s' % result['data'])
        return Response(self.client, json.loads(result['data']))

    def system(self, command, dir='', stdin='', env=None):
        parts = command.split()
        return self.raw('core.system', {'name': parts[0], 'args': parts[1:], 'dir': dir, 'stdin': stdin, 'env': env})


class Client:
    def __init__(self, host, port, password):
        # ssl=True without verifying the node's self-signed certificate, as
        # the Zero-OS client's redis-py did by default.
        self.redis = redis.Redis(host=host, port=port, password=password, ssl=True,
                                 ssl_cert_reqs=None, socket_timeout=15)

    def raw(self, command, arguments, queue=None, max_time=None, stream=False, tags=None, id=None):
        job_id = id or str(uuid.uuid4())
        payload = {'id': job_id, 'command': command, 'arguments': arguments, 'queue': queue,
                   'max_time': max_time, 'stream': stream, 'tags': tags}
        flag = 'result:%s:flag' % job_id
        self.redis.rpush('core:default', json.dumps(payload))
        if self.redis.brpoplpush(flag, flag, 10) is None:
            raise TimeoutError('failed to queue job %s' % job_id)
        return Response(self, job_id)

    def sync(self, command, arguments):
        result = self.raw(command, arguments).get()
        if result['state'] != 'SUCCESS':
            raise RuntimeError('invalid response: %s' % result['state'], result)
        return result

    def json(self, command, arguments):
        result = self.sync(command, arguments)
        if result['level'] != 20:
            raise RuntimeError('invalid result level %d' % result['level'])
        return json.loads(result['data'])

    def ping(self):
        result = self.raw('core.ping', {}).get()
        assert result['state'] == 'SUCCESS', result
        return json.loads(result['data'])

    def system(self, command, dir='', stdin='', env=None, stream=False, max_time=None):
        parts = command.split()
        return self.raw('core.system', {'name': parts[0], 'args': parts[1:], 'dir': dir, 'stdin': stdin,
                                        'env': env}, stream=stream, max_time=max_time)

    def bash(self, script, stdin='', stream=False):
        return self.raw('bash', {'script': script, 'stdin': stdin}, stream=stream)

    def container_create(self, root_url, mount=None, host_network=False, nics=None, port=None, hostname=None,
                         privileged=False, storage=None, name=None, tags=None, identity=None, env=None):
        if nics is None:
            nics = [{'type': 'default'}]
        args = {'root': root_url, 'mount': mount, 'host_network': host_network, 'nics': nics, 'port': port,
                'hostname': hostname, 'privileged': privileged, 'storage': storage, 'name': name,
                'identity': identity, 'env': env}
        return self.raw('corex.create', args, tags=tags)

    def upload(self, remote, reader):
        fd = self.json('filesystem.open', {'file': remote, 'mode': 'w', 'perm': 0o644})
        while True:
            chunk = reader.read(512 * 1024)
            if chunk == b'':
                break
            self.json('filesystem.write', {'fd': fd, 'block': base64.encodebytes(chunk).decode()})
        self.json('filesystem.close', {'fd': fd})

    def download(self, remote, writer):
        fd = self.json('filesystem.open', {'file': remote, 'mode': 'r', 'perm': 0o644})
        while True:
            chunk = base64.decodebytes(self.json('filesystem.read', {'fd': fd}).encode())
            if chunk == b'':
                break
            writer.write(chunk)
        self.json('filesystem.close', {'fd': fd})


def containers(cl, root):
    job = cl.container_create(root, nics=[{'type': 'default'}], port={18383: 8080}, hostname='py1',
                              name='from-python', tags=['py'])
    result = job.get(30)
    assert result['state'] == 'SUCCESS' and result['level'] == 20, result
    cid = json.loads(result['data'])
    print('ok container.create')

    listed = cl.json('corex.list', {})
    assert str(cid) in listed, listed
    assert cl.json('corex.find', {'tags': ['py']}).keys() == {str(cid)}
    print('ok container.list')

    inner = ContainerClient(cl, int(cid))
    r = inner.system('ls /').get()
    assert r['state'] == 'SUCCESS' and 'bin' in r['streams'][0].split(), r
    r = inner.system('hostname').get()
    assert r['streams'][0] == 'py1\n', r
    print('ok container.client.system')

    r = cl.raw('corex.terminate', {'container': int(cid)}).get()
    assert r['state'] == 'SUCCESS', r
    assert str(cid) not in cl.json('corex.list', {})
    print('ok container.terminate')


def main():
    host, port, jwt, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    cl = Client(host, port, jwt)
    if len(sys.argv) > 5:
        containers(cl, sys.argv[5])
        return

    assert cl.ping() == 'pong'
    print('ok ping')

    r = cl.system('echo hello world').get()
    assert r['state'] == 'SUCCESS' and r['code'] == 1000 and r['streams'][0] == 'hello world\n', r
    r = cl.system('false').get()
    assert r['state'] == 'ERROR' and r['code'] == 1001, r
    print('ok system')

    lines = []
    job = cl.bash('for i in 1 2 3; do echo out$i; echo err$i >&2; done', stream=True)
    job.stream(lambda level, line, flags: lines.append((level, line, flags)))
    assert (1, 'out1', 0) in lines and (2, 'err3', 0) in lines, lines
    assert lines[-1][2] & 0x2, lines
    assert job.get()['state'] == 'SUCCESS'
    print('ok bash stream')

    mem = cl.json('info.mem', {})
    for k in ('total', 'available', 'used', 'usedPercent', 'free', 'active', 'inactive', 'buffers', 'cached'):
        assert k in mem, (k, mem)
    print('ok info.mem')

    sleeper = cl.system('sleep 60')
    jobs = cl.json('job.list', {'id': None})
    assert any(j['cmd']['id'] == sleeper.id for j in jobs), jobs
    assert cl.json('job.list', {'id': sleeper.id})[0]['cmd']['command'] == 'core.system'
    print('ok job.list')
    cl.json('job.kill', {'id': sleeper.id, 'signal': int(signal.SIGTERM)})
    r = sleeper.get()
    assert r['state'] == 'KILLED', r
    print('ok job.kill')

    victim = cl.bash('exec sleep 61')
    for _ in range(50):
        procs = cl.json('process.list', {'pid': None})
        mine = [p for p in procs if p['cmdline'] == 'sleep 61']
        if mine:
            break
        time.sleep(0.1)
    assert mine, 'sleep 61 not in process.list'
    for k in ('cmdline', 'cpu', 'pid', 'rss', 'vms', 'swap'):
        assert k in mine[0], (k, mine[0])
    assert cl.json('process.list', {'pid': mine[0]['pid']})[0]['pid'] == mine[0]['pid']
    print('ok process.list')
    cl.json('process.kill', {'pid': mine[0]['pid'], 'signal': int(signal.SIGKILL)})
    r = victim.get()
    assert r['state'] == 'KILLED', r
    print('ok process.kill')

    data = os.urandom(1300 * 1024)
    remote = os.path.join(workdir, 'uploaded.bin')
    cl.upload(remote, io.BytesIO(data))
    got = io.BytesIO()
    cl.download(remote, got)
    assert got.getvalue() == data, 'download differs from upload'
    assert cl.json('filesystem.exists', {'path': remote}) is True
    print('ok filesystem upload/download')

    r = cl.raw('no.such.command', {}).get()
    assert r['state'] == 'UNKNOWN_CMD', r
    print('ok unknown command')


if __name__ == '__main__':
    main()
