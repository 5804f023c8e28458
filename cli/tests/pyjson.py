"""Google's protobuf runtime over our schema, for the CLI's JSON fidelity tests.

    python3 pyjson.py DESCRIPTOR_SET MODE FILE

DESCRIPTOR_SET is the encoded google.protobuf.FileDescriptorSet of proto/ (coprocess_proto's
FILE_DESCRIPTOR_SET); the message classes are built from it with descriptor_pool and message_factory,
so no protoc is needed. MODE:
    json2json          json_format.Parse(FILE) then MessageToJson
    bin2json           Object.FromString(FILE) then MessageToJson
    bin2json_proto     the same, with preserving_proto_field_name=True
    json2bin           json_format.Parse(FILE) then SerializeToString (written to stdout)
"""
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def object_class(fds_path):
    with open(fds_path, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file_proto in fds.file:  # dependencies come first
        pool.Add(file_proto)
    descriptor = pool.FindMessageTypeByName("coprocess.Object")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def main():
    fds_path, mode, path = sys.argv[1:4]
    Object = object_class(fds_path)
    with open(path, "rb") as f:
        data = f.read()
    if mode in ("json2json", "json2bin"):
        msg = json_format.Parse(data.decode("utf-8"), Object())
    elif mode in ("bin2json", "bin2json_proto"):
        msg = Object.FromString(data)
    else:
        sys.exit(f"unknown mode {mode}")
    if mode == "json2bin":
        sys.stdout.buffer.write(msg.SerializeToString(deterministic=True))
    else:
        text = json_format.MessageToJson(msg, preserving_proto_field_name=(mode == "bin2json_proto"))
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
