package remote

import (
	"context"
	"fmt"
	"strings"

	"github.com/dmlog/dmlog/dirtylog"
)

// RegisterUserspace registers the kernel's "userspace" log type with the
// dirtylog registry, for logs served at network/address. A table line
// then builds a Client with the kernel's grammar:
//
//	userspace <#args> <uuid> [integrated_flush] <type> <type args...>
//
// e.g. dirtylog.New("userspace", []string{"LVM-xyz", "clustered-disk",
// "253:2", "1024"}, env). As the kernel, it wants at least three words
// counting the UUID, a UUID of at most 128 bytes, and recognises
// integrated_flush (any case) only right after the UUID. env.DeviceSize
// is the device size; base supplies the node id, TLS and timeouts (its
// UUID, Args, DeviceSize and IntegratedFlush are taken from the table).
// Dialling is bounded by base.Timeout.
//
// The type is not registered by default because it needs the server's
// address. Registering twice fails with dirtylog.ErrExists.
func RegisterUserspace(network, address string, base ClientOptions) error {
	return registerUserspace("userspace", network, address, base)
}

func registerUserspace(name, network, address string, base ClientOptions) error {
	return dirtylog.Register(name, func(args []string, env dirtylog.Env) (dirtylog.Log, error) {
		o, err := parseUserspaceArgs(args, base)
		if err != nil {
			return nil, err
		}
		o.DeviceSize = env.DeviceSize
		timeout := o.Timeout
		if timeout <= 0 {
			timeout = DefaultTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return Dial(ctx, network, address, o)
	})
}

func parseUserspaceArgs(args []string, o ClientOptions) (ClientOptions, error) {
	if len(args) < 3 {
		return o, fmt.Errorf("%w: userspace log wants <uuid> [integrated_flush] <type> <args>, got %d words", dirtylog.ErrBadArgs, len(args))
	}
	if len(args[0]) > MaxUUIDLen {
		return o, fmt.Errorf("%w: %w: %d bytes", dirtylog.ErrBadArgs, ErrUUIDTooLong, len(args[0]))
	}
	o.UUID = args[0]
	rest := args[1:]
	o.IntegratedFlush = false
	if strings.EqualFold(rest[0], "integrated_flush") {
		o.IntegratedFlush = true
		rest = rest[1:]
	}
	if len(rest) < 2 {
		return o, fmt.Errorf("%w: userspace log wants a type and its arguments after the UUID", dirtylog.ErrBadArgs)
	}
	o.Args = append([]string(nil), rest...)
	return o, nil
}
