// Package etcdlog is a clustered dirtylog.Log whose state lives in etcd.
package etcdlog
