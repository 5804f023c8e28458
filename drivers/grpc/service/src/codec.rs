//! A tonic codec that moves [`RawObject`]s as they are and (de)serializes the small messages
//! (`Event`, `EventReply`) with prost.

use std::marker::PhantomData;

use bytes::{Buf, BufMut};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

use crate::RawObject;

/// A message the codec can write.
pub trait WireEncode: Send + 'static {
    fn encode_to(&self, dst: &mut EncodeBuf<'_>) -> Result<(), Status>;
}

/// A message the codec can read.
pub trait WireDecode: Sized + Send + 'static {
    fn decode_from(src: &mut DecodeBuf<'_>) -> Result<Self, Status>;
}

impl WireEncode for RawObject {
    fn encode_to(&self, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&self.0);
        Ok(())
    }
}

impl WireDecode for RawObject {
    fn decode_from(src: &mut DecodeBuf<'_>) -> Result<Self, Status> {
        Ok(RawObject(src.copy_to_bytes(src.remaining())))
    }
}

macro_rules! prost_message {
    ($($t:ty),*) => {$(
        impl WireEncode for $t {
            fn encode_to(&self, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
                self.encode(dst)
                    .map_err(|e| Status::internal(format!("encoding {}: {e}", stringify!($t))))
            }
        }

        impl WireDecode for $t {
            fn decode_from(src: &mut DecodeBuf<'_>) -> Result<Self, Status> {
                <$t>::decode(src)
                    .map_err(|e| Status::internal(format!("decoding {}: {e}", stringify!($t))))
            }
        }
    )*};
}

prost_message!(coprocess_proto::Event, coprocess_proto::EventReply);

/// The codec named in the generated client and server: `E` is what this side sends, `D` what it
/// receives.
#[derive(Debug)]
pub struct WireCodec<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for WireCodec<E, D> {
    fn default() -> Self {
        WireCodec(PhantomData)
    }
}

impl<E: WireEncode, D: WireDecode> Codec for WireCodec<E, D> {
    type Encode = E;
    type Decode = D;
    type Encoder = WireEncoder<E>;
    type Decoder = WireDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        WireEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder(PhantomData)
    }
}

#[derive(Debug)]
pub struct WireEncoder<E>(PhantomData<fn(E)>);

impl<E: WireEncode> Encoder for WireEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode_to(dst)
    }
}

#[derive(Debug)]
pub struct WireDecoder<D>(PhantomData<fn() -> D>);

impl<D: WireDecode> Decoder for WireDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode_from(src).map(Some)
    }
}
