package etcdlog
